"""The MoCo training step on the JAX backend: a stateless function.

The JAX trainer passes the model's state as four lists of arrays
(trainable, non-trainable, optimizer and metric variables, in the order of
`model.trainable_variables` etc.) and jits the step. Here every piece of
the step runs in a `keras.StatelessScope` that maps each variable to its
current value, so the model's ordinary code (the momentum update's, the
batch norms', the seed generators' and the queue's `assign`s) becomes
pure: the scope collects the new values and the step returns them as the
new state. Only the query network's trainable values are differentiated.

Under `keras.distribution.DataParallel` the trainer shards the batch over
the devices and replicates the state; the step sees the global batch, so
losses, batch statistics and the enqueued keys are those of one device
with the same batch.
"""

import jax
import keras

from kskel.models.steps import unpack_views
from kskel.models.steps import update_trackers


def train_step(model, state, data):
    """`(logs, new_state)` for `state = (trainable, non_trainable,
    optimizer, metrics)` value lists."""
    views = unpack_views(data)
    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    variables = [v for group in groups for v in group]
    values = {
        id(v): value
        for group, group_values in zip(groups, state)
        for v, value in zip(group, group_values)
    }

    _, values = _stateless(variables, values, model.momentum_update)

    query_variables = model.query.trainable_variables
    query_values = [values[id(v)] for v in query_variables]

    def scaled_loss(query_values):
        current = dict(values)
        current.update(zip(map(id, query_variables), query_values))

        def compute():
            loss, metrics, keys = model.contrastive_loss(views)
            return model.optimizer.scale_loss(loss), (loss, metrics, keys)

        (scaled, outputs), current = _stateless(variables, current, compute)
        return scaled, (outputs, current)

    grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)
    (_, (outputs, values)), gradients = grad_fn(query_values)
    loss, metrics, keys = outputs

    optimizer_variables = model.optimizer.variables
    new_query, new_optimizer = model.optimizer.stateless_apply(
        [values[id(v)] for v in optimizer_variables],
        gradients,
        query_values,
    )
    values.update(zip(map(id, query_variables), new_query))
    values.update(zip(map(id, optimizer_variables), new_optimizer))

    def finish():
        model.enqueue(keys)
        return update_trackers(model, loss, metrics)

    logs, values = _stateless(variables, values, finish)
    new_state = tuple([values[id(v)] for v in group] for group in groups)
    return logs, new_state


def _stateless(variables, values, fn):
    """`(fn(), new_values)` with `variables` read from and written to
    `values` (a dict by `id(variable)`) instead of themselves."""
    mapping = [(v, values[id(v)]) for v in variables]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        outputs = fn()
    return outputs, {id(v): scope.get_current_value(v) for v in variables}

"""The MoCo training step, one module per Keras backend.

`MoCo.train_step` calls `train_step(model, *args)`, which runs the step of
the current backend:

- `tensorflow_step`: `tf.GradientTape`, inside or outside a
  `tf.distribute` strategy (keys gathered from every replica).
- `jax_step`: a stateless function of the trainer's state (`keras.
  StatelessScope` + `jax.value_and_grad` + `optimizer.stateless_apply`),
  jitted by the trainer and sharded by `keras.distribution`.
- `torch_step`: `loss.backward()`, then the optimizer, the momentum update
  and the queue under `torch.no_grad()`.

Every step has the same order: momentum update of the key network, loss and
gradients of the query network's trainable variables, optimizer update,
enqueue of the keys, metric trackers.
"""

import importlib

import keras

_MODULES = {
    "tensorflow": "tensorflow_step",
    "jax": "jax_step",
    "torch": "torch_step",
}


def train_step(model, *args):
    """Runs the current backend's training step of a `MoCo` model.

    Args:
        model: a compiled `MoCo`.
        *args: what the backend's trainer passes to `train_step`: `(data,)`
            on TensorFlow and PyTorch, `(state, data)` on JAX.
    """
    backend = keras.backend.backend()
    if backend not in _MODULES:
        raise NotImplementedError(
            f"MoCo training supports the backends {sorted(_MODULES)}. "
            f"Received: KERAS_BACKEND={backend}"
        )
    module = importlib.import_module(f"{__name__}.{_MODULES[backend]}")
    return module.train_step(model, *args)


def unpack_views(data):
    """The views of `(views, labels)` or of a bare views tuple."""
    if isinstance(data, (tuple, list)) and isinstance(data[0], (tuple, list)):
        return data[0]
    return data


def update_trackers(model, loss, metrics):
    """Updates the loss and `model.METRICS` trackers; returns the logs."""
    model.trackers["loss"].update_state(loss)
    for name in model.METRICS:
        model.trackers[name].update_state(metrics[name])
    return {m.name: m.result() for m in model.metrics}

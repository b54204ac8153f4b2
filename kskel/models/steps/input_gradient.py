"""`d fn(x) / d x` for a scalar function, one small function per backend.

ActCLR's actionlet needs the gradient of an anchor similarity with respect
to a feature map, not to any weight, in the middle of a training step.
No `keras.ops` expresses that, so each backend gets its form here: a local
`tf.GradientTape`, `jax.grad` or `torch.autograd.grad`. In all three the
weights receive no gradient and no optimizer state is touched; variable
writes that `fn` makes (a projection head's batch-norm statistics in
training mode) take effect as on TensorFlow.
"""

import keras


def input_gradient(fn, x):
    """The gradient of the scalar `fn(x)` with respect to the tensor x."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(fn, x)
    if backend == "jax":
        return _jax(fn, x)
    if backend == "torch":
        return _torch(fn, x)
    raise NotImplementedError(f"No input gradient for KERAS_BACKEND={backend}.")


def _tensorflow(fn, x):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return tape.gradient(y, x)


def _jax(fn, x):
    import jax

    assigned = {}

    def traced(x):
        # The writes of fn are traced values of this differentiation: they
        # are collected in a scope of their own and returned as auxiliary
        # outputs, then written outside it.
        with _RecordingScope() as scope:
            y = fn(x)
        for variable in scope.assigned:
            assigned[id(variable)] = variable
        return y, {key: scope.state_mapping[key] for key in assigned}

    gradient, updates = jax.grad(traced, has_aux=True)(x)
    for key, value in updates.items():
        assigned[key].assign(value)
    return gradient


def _torch(fn, x):
    import torch

    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(fn(x), x, allow_unused=True)
    return torch.zeros_like(x) if gradient is None else gradient


class _RecordingScope(keras.StatelessScope):
    """A stateless scope that reads through to the enclosing one (or the
    variables) and records which variables were written."""

    def __enter__(self):
        super().__enter__()
        if self.original_scope is not None:
            self.state_mapping.update(self.original_scope.state_mapping)
        self.assigned = []
        return self

    def add_update(self, update):
        super().add_update(update)
        if all(v is not update[0] for v in self.assigned):
            self.assigned.append(update[0])

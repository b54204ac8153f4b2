"""`--strategy` on the JAX and PyTorch backends.

On TensorFlow, `--strategy` names a `tf.distribute` strategy. On JAX,
`mirrored` (data parallelism over the local devices) is
`keras.distribution.DataParallel`: the batch is sharded over the devices,
the variables replicated, and the jitted step computes the global batch's
loss, batch statistics and keys (the same step as one device). PyTorch
trains on one device.
"""

import keras

from kskel.errors import KskelError


def tf_strategy_name(name):
    """Configures `--strategy=name` for the backend; returns the name of
    the `tf.distribute` strategy to create (`"default"` off TensorFlow)."""
    backend = keras.backend.backend()
    if backend == "tensorflow" or name == "default":
        return name
    if backend == "jax" and name == "mirrored":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return "default"
    raise KskelError(
        f"--strategy={name} is not available on KERAS_BACKEND={backend}; "
        "use --strategy=default"
        + (" or mirrored (DataParallel)." if backend == "jax" else ".")
    )

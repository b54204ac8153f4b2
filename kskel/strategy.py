"""`--strategy`: what each Keras backend creates for it.

On TensorFlow, `--strategy` names a `tf.distribute` strategy: `default`,
`mirrored` (`MirroredStrategy` over the local devices) or `multiworker`
(`MultiWorkerMirroredStrategy` from `TF_CONFIG`, see `kskel.distributed`).
On JAX, `mirrored` (data parallelism over the local devices) is
`keras.distribution.DataParallel`: the batch is sharded over the devices,
the variables replicated, and the jitted step computes the global batch's
loss, batch statistics and keys (the same step as one device). PyTorch
trains on one device.
"""

import keras

from kskel.errors import KskelError


def make_strategy(name):
    """Configures `--strategy=name` for the current backend.

    Returns the `tf.distribute` strategy to train in: the one named on
    TensorFlow, TensorFlow's default strategy on JAX and PyTorch (after
    setting JAX's `DataParallel` distribution for `mirrored`). Call it
    before anything else starts TensorFlow's runtime in the process: a
    multi-worker strategy must configure it.

    Raises:
        KskelError: a strategy the backend does not offer.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow" and name != "default":
        if backend != "jax" or name != "mirrored":
            raise KskelError(
                f"--strategy={name} is not available on KERAS_BACKEND="
                f"{backend}; use --strategy=default"
                + (" or mirrored (DataParallel)." if backend == "jax" else ".")
            )
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        name = "default"
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        from kskel import distributed

        return distributed.multiworker_strategy()
    return tf.distribute.get_strategy()

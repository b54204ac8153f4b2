"""One SkeletonCLR step on 1 or 2 replicas (two logical CPUs); saves state.

Run as `python tests/models/mirrored_step.py REPLICAS OUT.npz`; a separate
process because logical devices must be set before TensorFlow starts.
"""

import sys

import numpy as np
import tensorflow as tf


def main(replicas, out):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras

    from kskel.models import SkeletonCLR
    from kskel.optimizers import TorchSGD

    keras.utils.set_random_seed(0)
    if replicas == 2:
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = SkeletonCLR(
            encoder_config={
                "base_width": 4,
                "hidden_dim": 16,
                "dropout": 0.0,
                "sync_batch_norm": True,
            },
            feature_dim=8,
            queue_size=16,
            input_shape=(2, 12, 25, 3),
            momentum=0.9,
        )
        model.compile(optimizer=TorchSGD(0.1, l2=1e-4), jit_compile=False)

    def values(variables):
        return [np.asarray(tf.convert_to_tensor(v.value)) for v in variables]

    before = values(model.query.trainable_weights)
    rng = np.random.default_rng(0)
    views = tuple(
        rng.normal(size=(8, 2, 12, 25, 3)).astype("float32") for _ in range(2)
    )
    dataset = tf.data.Dataset.from_tensor_slices(views).batch(8)
    history = model.fit(dataset, epochs=1, verbose=0)
    after = values(model.query.trainable_weights)
    np.savez(
        out,
        queue=values([model.queue])[0],
        ptr=values([model.queue_ptr])[0],
        loss=history.history["loss"][0],
        update=np.concatenate([(a - b).ravel() for a, b in zip(after, before)]),
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

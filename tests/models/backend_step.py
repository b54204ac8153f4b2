"""One training step of the contrastive models on the current Keras backend.

Run as `KERAS_BACKEND=B python tests/models/backend_step.py DIR METHOD...
[--data_parallel=2]` (a separate process per backend: Keras fixes it at
import). For each method, with `DIR/METHOD/init.npz` absent it builds the
model and writes its variables there and the views to `views.npz`; then it
loads both, takes one `fit` step and writes the loss and every variable to
`step_<backend>.npz` (on TensorFlow for the first method only). With
`--data_parallel=D` (JAX, started with
`XLA_FLAGS=--xla_force_host_platform_device_count=D`) it then takes the
first method's step under `keras.distribution.DataParallel` over D host
devices and writes `step_jax_dataparallel.npz`. On TensorFlow it also
takes each step with the generic batch norm instead of the fused kernel
(`step_tensorflow_generic.npz`).

Dropout is 0 and ActCLR's batch draws (partner shift, Skeleton Mix region
and kind) are fixed, so the step is a deterministic function of weights
and views on every backend.
"""

import itertools
import os
import sys

import numpy as np

METHODS = {
    "skeletonclr": {},
    "aimclr": {"mining_epoch": 0, "topk": 2},
    # The paper's actionlet, as the pretraining CLI's defaults.
    "actclr": {
        "topk": 16,
        "anchor": "batch_mean",
        "gradient_activation": "relu",
        "mask_smoothing": "adjacency",
        "mask_threshold": 0.3,
    },
}
VIEWS = {"skeletonclr": 2, "aimclr": 3, "actclr": 4}
VIEW = (2, 16, 25, 3)
BATCH = 4


def build(method):
    import keras

    from kskel import models
    from kskel.optimizers import TorchSGD

    # Seeded before the model is built, so every run and backend starts
    # from the same weights (the first method's used to be a fresh draw).
    keras.utils.set_random_seed(0)
    cls = {
        "skeletonclr": models.SkeletonCLR,
        "aimclr": models.AimCLR,
        "actclr": models.ActCLR,
    }[method]
    model = cls(
        encoder_config={"base_width": 4, "hidden_dim": 16, "dropout": 0.0},
        feature_dim=8,
        queue_size=32,
        momentum=0.9,
        head_batch_norm=True,
        key_init="independent",
        input_shape=VIEW,
        **METHODS[method],
    )
    # As pretraining: a TensorFlow graph, a jitted JAX step, eager PyTorch.
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9, l2=1e-4),
        jit_compile=keras.backend.backend() == "jax",
    )
    keras.utils.set_random_seed(0)
    return model


def state_variables(model):
    """Every variable but the seed generators' (their numbers, and dtypes,
    are backend-specific; nothing here draws from them)."""
    return [v for v in model.variables if "seed_generator" not in v.path]


def fix_actclr_draws():
    """Replaces the random Skeleton Mix draws by fixed ones."""
    from keras import ops

    from kskel.models import skeleton_mix

    def scalar(value, dtype="int32"):
        return ops.convert_to_tensor(np.asarray(value, dtype))

    membership = skeleton_mix.part_membership("ntu25")
    draws = itertools.cycle(
        [
            # View B: CutMix of parts 0 and 2 over grid cells 1-2.
            (1, skeleton_mix.CUTMIX, membership[0] + membership[2], 1, 2),
            # View C: ResizeMix of part 1 over grid cells 0-1.
            (2, skeleton_mix.RESIZEMIX, membership[1], 0, 2),
        ]
    )

    def draw_shift(seed, num_samples):
        return scalar(1)

    def draw_mix_params(seed, num_samples, num_frames, layout, epoch=None):
        shift, kind, joints, start, chunks = next(draws)
        return skeleton_mix.MixParams(
            shift=scalar(shift),
            kind=scalar(kind),
            joints=ops.convert_to_tensor(joints.astype("float32")),
            start=scalar(start),
            chunks=scalar(chunks),
            lam=scalar(0.3, "float32"),
        )

    skeleton_mix.draw_shift = draw_shift
    skeleton_mix.draw_mix_params = draw_mix_params


def step(method, directory, distribution=None, suffix=""):
    import keras
    import tensorflow as tf

    # Same layer names (variable paths) for every model of the process.
    keras.backend.clear_session()
    keras.distribution.set_distribution(distribution)
    model = build(method)
    variables = state_variables(model)
    init = os.path.join(directory, "init.npz")
    if not os.path.exists(init):
        rng = np.random.default_rng(0)
        np.savez(
            init,
            paths=np.array([v.path for v in variables]),
            **{f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)},
        )
        np.savez(
            os.path.join(directory, "views.npz"),
            *(
                rng.normal(size=(BATCH, *VIEW)).astype("float32")
                for _ in range(VIEWS[method])
            ),
        )
    saved = np.load(init)
    if list(saved["paths"]) != [v.path for v in variables]:
        raise SystemExit("variables differ from init.npz")
    for i, v in enumerate(variables):
        v.assign(saved[f"v{i}"])

    views = np.load(os.path.join(directory, "views.npz"))
    views = tuple(views[f"arr_{i}"] for i in range(VIEWS[method]))
    dataset = tf.data.Dataset.from_tensor_slices(views).batch(BATCH)
    history = model.fit(dataset, epochs=1, verbose=0)
    name = keras.backend.backend() + suffix
    np.savez(
        os.path.join(directory, f"step_{name}.npz"),
        loss=history.history["loss"][0],
        paths=np.array([v.path for v in variables]),
        trainable=np.array([v.trainable for v in variables]),
        **{f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)},
    )


def main(directory, *args):
    import keras

    methods = [a for a in args if not a.startswith("--")]
    devices = [int(a.split("=")[1]) for a in args if a.startswith("--data")]
    fix_actclr_draws()
    tensorflow = keras.backend.backend() == "tensorflow"
    for method in methods:
        os.makedirs(os.path.join(directory, method), exist_ok=True)
        # TensorFlow's default (fused batch-norm) step is the same kernel
        # in every method: the first method's is enough, the others take
        # only the generic one below (it also writes init.npz first).
        if not tensorflow or method == methods[0]:
            step(method, os.path.join(directory, method))
    if tensorflow:
        from kskel.layers.batch_norm import BatchNorm

        BatchNorm._fused_applies = lambda self, inputs: False
        for method in methods:
            step(method, os.path.join(directory, method), suffix="_generic")
    if devices:
        import jax

        data_parallel = keras.distribution.DataParallel(
            devices=jax.devices()[: devices[0]]
        )
        step(
            methods[0],
            os.path.join(directory, methods[0]),
            data_parallel,
            suffix="_dataparallel",
        )


if __name__ == "__main__":
    main(*sys.argv[1:])

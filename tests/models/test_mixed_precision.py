"""SkeletonCLR, AimCLR and ActCLR under Keras mixed-precision policies.

Each float32 model is compared with the same model built under a mixed
policy and given the same variables: one training step on the same batch
must give nearly the same loss while every variable, the queue and the loss
stay float32.
"""

import contextlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.data import schema
from kskel.errors import KskelError
from kskel.models import AimCLR
from kskel.models import SkeletonCLR
from kskel.models.actclr import ActCLR
from kskel.optimizers import TorchSGD
from kskel.pretraining import PretrainConfig
from kskel.pretraining import run_pretraining

# Dropout off: its masks are drawn in the compute dtype, so the float32 and
# the mixed step would drop different units; the comparison is of rounding.
SMALL = {"base_width": 4, "hidden_dim": 16, "dropout": 0.0}
VIEW = (2, 12, 25, 3)
ACTCLR_VIEW = (2, 16, 25, 3)  # ActCLR needs T >= 16 for Skeleton Mix.

# (class, view shape, number of views, options, relative loss tolerance).
# Measured |loss_bf16 - loss_f32| / loss_f32: on this test's batch
# SkeletonCLR 0.41 %, AimCLR 0.02 %, ActCLR 0.18 %; over four other random
# batches and initialisations up to 0.95 %, 0.25 % and 4.3 % (rounding only
# the inputs to bfloat16 moves the float32 loss by up to 0.13 %, 0.07 % and
# 0.67 %). ActCLR varies most: its actionlet is a near-binary mask (x 1e8,
# clipped) whose cells flip with rounding, and the key temperature 0.04
# multiplies cosine rounding errors by 25. The tolerances cover the worst
# case with about 2x margin.
METHODS = {
    "skeletonclr": (SkeletonCLR, VIEW, 2, {"queue_size": 8}, 2e-2),
    "aimclr": (
        AimCLR,
        VIEW,
        3,
        {"queue_size": 16, "mining_epoch": 0, "topk": 2},
        2e-2,
    ),
    "actclr": (ActCLR, ACTCLR_VIEW, 4, {"queue_size": 64, "topk": 16}, 0.1),
}


@pytest.fixture(autouse=True)
def _float32_policy():
    """Every test starts and ends under the float32 policy."""
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@contextlib.contextmanager
def _policy(name):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _pair(cls, view, policy, optimizer=None, **options):
    """A float32 model and the same model under `policy`, equal variables."""
    options = {
        "encoder_config": SMALL,
        "feature_dim": 8,
        "input_shape": view,
        **options,
    }
    reference = cls(**options)
    with _policy(policy):
        mixed = cls(**options)
    reference.compile(optimizer=TorchSGD(0.1, momentum=0.9), jit_compile=False)
    mixed.compile(
        optimizer=optimizer or TorchSGD(0.1, momentum=0.9), jit_compile=False
    )
    if len(mixed.variables) != len(reference.variables):
        raise ValueError("the two models differ")
    # Weights, queue and the random states of ActCLR's Skeleton Mix.
    for target, source in zip(mixed.variables, reference.variables):
        target.assign(source)
    return reference, mixed


def _views(view, count, n=4):
    rng = np.random.default_rng(0)
    return tuple(
        tf.constant(rng.normal(size=(n, *view)).astype("float32"))
        for _ in range(count)
    )


def _float_dtypes(variables):
    return {v.dtype for v in variables if "float" in v.dtype}


def _flat(variables):
    return np.concatenate([np.ravel(np.asarray(v)) for v in variables])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_bfloat16_step_matches_float32(method):
    cls, view, count, options, rtol = METHODS[method]
    reference, mixed = _pair(cls, view, "mixed_bfloat16", **options)
    views = _views(view, count)
    # The networks do compute in bfloat16; their outputs leave in float32.
    assert mixed.query.encoder.blocks[0].compute_dtype == "bfloat16"
    assert mixed.query(views[0]).dtype == tf.bfloat16
    assert mixed(views[0]).dtype == tf.float32

    expected = reference.train_step(views)
    got = mixed.train_step(views)

    loss = float(got["loss"])
    assert np.isfinite(loss)
    assert loss == pytest.approx(float(expected["loss"]), rel=rtol)
    assert _float_dtypes(mixed.variables) == {"float32"}
    assert _float_dtypes(mixed.optimizer.variables) == {"float32"}
    queue = np.asarray(mixed.queue)
    assert queue.dtype == np.float32
    # Keys normalised in bfloat16 would be off by ~1e-3.
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
    # The enqueued keys are the float32 model's, up to rounding.
    np.testing.assert_allclose(
        queue, np.asarray(reference.queue), rtol=0, atol=0.1
    )
    assert int(mixed.queue_ptr) == int(reference.queue_ptr) == 4
    # The momentum update ran in float32 from equal weights (the key's
    # batch-norm statistics come from its bfloat16 forward pass).
    np.testing.assert_allclose(
        _flat(k for k, _ in mixed._ema_pairs),
        _flat(k for k, _ in reference._ema_pairs),
        rtol=1e-6,
    )
    assert keras.mixed_precision.global_policy().name == "float32"


def test_actclr_actionlet_is_float32_under_bfloat16():
    _, mixed = _pair(
        ActCLR, ACTCLR_VIEW, "mixed_bfloat16", queue_size=64, topk=16
    )
    mask = mixed.actionlet(_views(ACTCLR_VIEW, 1)[0])
    assert mask.dtype == tf.float32
    assert mask.shape == (4, 2, 4, 25)
    values = np.asarray(mask)
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_float16_step_with_loss_scaling():
    # At initialisation the raw projections of this tiny network are
    # short, so the gradients at the head output reach ~1e3: a loss scale
    # of 2^8 or more overflows float16 (max 65504) and the step is skipped.
    # With 16 the first step is applied and can be compared.
    optimizer = keras.optimizers.LossScaleOptimizer(
        TorchSGD(0.1, momentum=0.9), initial_scale=16.0
    )
    reference, mixed = _pair(
        SkeletonCLR, VIEW, "mixed_float16", optimizer, queue_size=8
    )
    assert mixed.query.encoder.blocks[0].compute_dtype == "float16"
    views = _views(VIEW, 2)
    before = _flat(reference.query.trainable_variables)
    expected = reference.train_step(views)
    got = mixed.train_step(views)

    assert float(got["loss"]) == pytest.approx(
        float(expected["loss"]), rel=1e-3
    )
    assert float(mixed.optimizer.dynamic_scale) == 16.0  # Not skipped.
    assert int(mixed.optimizer.iterations) == 1
    # The update is the float32 one (measured 0.8 % apart): the loss was
    # scaled by 16 and the gradients unscaled, else it would be 16x off.
    step = _flat(reference.query.trainable_variables) - before
    mixed_step = _flat(mixed.query.trainable_variables) - before
    assert np.linalg.norm(mixed_step - step) < 0.05 * np.linalg.norm(step)
    assert _float_dtypes(mixed.variables) == {"float32"}


def test_float16_overflow_skips_the_step():
    optimizer = keras.optimizers.LossScaleOptimizer(TorchSGD(0.1, momentum=0.9))
    _, mixed = _pair(
        SkeletonCLR, VIEW, "mixed_float16", optimizer, queue_size=8
    )
    before = _flat(mixed.query.trainable_variables)
    logs = mixed.train_step(_views(VIEW, 2))
    # 2^15 overflows here (see above): weights kept, scale halved.
    assert np.isfinite(float(logs["loss"]))
    np.testing.assert_array_equal(
        _flat(mixed.query.trainable_variables), before
    )
    assert float(mixed.optimizer.dynamic_scale) == 2.0**14
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(mixed.queue), axis=1), 1.0, rtol=1e-5
    )


@pytest.mark.parametrize("precision", ["float64", "fp16", "bfloat16"])
def test_bad_precision_is_named(tmp_path, precision):
    config = PretrainConfig(
        data_dir=str(tmp_path), model_dir=str(tmp_path), precision=precision
    )
    with pytest.raises(KskelError, match="--precision"):
        config.validate()


def test_run_pretraining_mixed_float16_restores_policy(tmp_path):
    rng = np.random.default_rng(0)
    samples = (
        schema.Sample(
            skeleton=(0.1 * rng.normal(size=(2, 16, 25, 3))).astype("float32"),
            label=i % 2,
            name=f"s{i}",
            num_frames=16,
        )
        for i in range(4)
    )
    data_dir = tmp_path / "data"
    schema.write_dataset(
        data_dir,
        {"train": samples},
        layout="ntu25",
        class_names=["a", "b"],
        preprocessing={},
    )
    config = PretrainConfig(
        data_dir=str(data_dir),
        model_dir=str(tmp_path / "run"),
        epochs=1,
        batch_size=4,
        queue_size=8,
        feature_dim=8,
        base_width=4,
        hidden_dim=16,
        verbose=0,
        precision="mixed_float16",
    )
    result = run_pretraining(config)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert np.isfinite(result["history"]["loss"]).all()
    query = keras.models.load_model(tmp_path / "run" / "query_network.keras")
    assert _float_dtypes(query.variables) == {"float32"}

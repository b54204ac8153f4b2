"""MoCo mechanics of SkeletonCLR: EMA, queue, loss and a training step."""

import numpy as np
import pytest
import tensorflow as tf

from kskel.errors import KskelError
from kskel.models import SkeletonCLR
from kskel.models import losses
from kskel.models.moco import EpochTracker
from kskel.optimizers import TorchSGD

SMALL = {"base_width": 4, "hidden_dim": 16}
VIEW = (2, 12, 25, 3)


def _model(**kwargs):
    options = {
        "encoder_config": SMALL,
        "feature_dim": 8,
        "queue_size": 8,
        "input_shape": VIEW,
    }
    options.update(kwargs)
    model = SkeletonCLR(**options)
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9, l2=1e-4), jit_compile=False
    )
    return model


def _views(rng, n=4):
    return tuple(
        tf.constant(rng.normal(size=(n, *VIEW)).astype("float32"))
        for _ in range(2)
    )


def test_logits_and_loss_match_numpy(rng):
    q = rng.normal(size=(3, 5)).astype("float32")
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k = rng.normal(size=(3, 5)).astype("float32")
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    queue = rng.normal(size=(7, 5)).astype("float32")
    logits = np.asarray(losses.moco_logits(q, k, queue, 0.07))
    expected = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue.T], 1)
    np.testing.assert_allclose(logits, expected / 0.07, rtol=1e-5)
    shifted = expected / 0.07 - expected.max(1, keepdims=True) / 0.07
    ce = -(shifted[:, 0] - np.log(np.exp(shifted).sum(1))).mean()
    assert float(losses.info_nce(logits)) == pytest.approx(ce, rel=1e-5)


def test_queue_starts_normalised_and_keys_wrap_around(rng):
    model = _model()
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(model.queue), axis=1), 1.0, rtol=1e-5
    )
    first = rng.normal(size=(6, 8)).astype("float32")
    second = rng.normal(size=(4, 8)).astype("float32")
    model.enqueue(first)
    assert int(model.queue_ptr) == 6
    model.enqueue(second)
    assert int(model.queue_ptr) == 2
    queue = np.asarray(model.queue)
    np.testing.assert_array_equal(queue[:2], second[2:])
    np.testing.assert_array_equal(queue[2:6], first[2:])
    np.testing.assert_array_equal(queue[6:], second[:2])


def test_fill_queue_normalises_repeats_and_resets_the_pointer(rng):
    model = _model()
    model.enqueue(rng.normal(size=(3, 8)).astype("float32"))
    keys = rng.normal(size=(3, 8)).astype("float32")
    model.fill_queue(keys)
    unit = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    np.testing.assert_allclose(
        np.asarray(model.queue),
        np.concatenate([unit, unit, unit[:2]]),
        rtol=1e-6,
    )
    assert int(model.queue_ptr) == 0
    with pytest.raises(KskelError, match=r"shape \(n, 8\)"):
        model.fill_queue(keys[:, :4])
    with pytest.raises(KskelError, match="not finite"):
        model.fill_queue(np.full((2, 8), np.nan))


def test_train_step_updates_key_by_ema_only(rng):
    model = _model(momentum=0.9, key_init="independent")
    query_before = [np.asarray(q) for _, q in model._ema_pairs]
    key_before = [np.asarray(k) for k, _ in model._ema_pairs]
    stats = [
        v
        for v in model.key.non_trainable_variables
        if "moving_variance" in v.path
    ]
    key_stats = [np.asarray(v) for v in stats]
    model.train_step(_views(rng))
    for (k, q), k0, q0 in zip(model._ema_pairs, key_before, query_before):
        np.testing.assert_allclose(
            np.asarray(k), 0.9 * k0 + 0.1 * q0, rtol=1e-5, atol=1e-6
        )
        assert not np.allclose(np.asarray(q), q0)  # SGD moved the query.
    # The key's BN statistics are not averaged: every one of them moves
    # through the key network's own training-mode (batch statistics) pass.
    # data BN + 2 per block + the residual BNs of blocks 4 and 7 (block 9 is
    # an identity at hidden_dim = 4 * base_width). Variances: some means
    # stay ~0 after zero-mean inputs.
    assert len(stats) == 1 + 2 * 10 + 2
    for v, s in zip(stats, key_stats):
        assert not np.allclose(np.asarray(v), s), v.path


def test_key_init_copy_and_independent(rng):
    copied = _model(key_init="copy")
    for k, q in copied._ema_pairs:
        np.testing.assert_array_equal(np.asarray(k), np.asarray(q))
    independent = _model(key_init="independent")
    assert not all(
        np.allclose(np.asarray(k), np.asarray(q))
        for k, q in independent._ema_pairs
    )
    with pytest.raises(KskelError, match="key_init"):
        _model(key_init="shared")


def test_fit_trains_and_fills_the_queue(rng):
    model = _model()
    initial_queue = np.asarray(model.queue)
    views = _views(rng, n=8)
    dataset = tf.data.Dataset.from_tensor_slices(views).batch(4)
    history = model.fit(
        dataset, epochs=2, verbose=0, callbacks=[EpochTracker()]
    )
    assert int(model.epoch) == 2
    assert np.isfinite(history.history["loss"]).all()
    assert 0.0 <= history.history["contrast_acc"][-1] <= 1.0
    assert int(model.queue_ptr) == 0  # 4 steps x 4 keys, K = 8.
    queue = np.asarray(model.queue)
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)
    # 16 keys went through a queue of 8: every initial row was replaced.
    assert not np.isclose(queue, initial_queue).all(axis=1).any()


def test_train_step_is_traced_once_across_epochs_and_datasets(rng):
    """The per-epoch fit loop of kskel.pretrain reuses one traced step."""
    model = _model()
    traces = []
    train_step = model.train_step

    def counted(data):
        traces.append(1)  # Python runs only while tracing.
        return train_step(data)

    model.train_step = counted
    for epoch in range(2):
        dataset = tf.data.Dataset.from_tensor_slices(_views(rng, n=8))
        model.fit(
            dataset.batch(4), initial_epoch=epoch, epochs=epoch + 1, verbose=0
        )
    assert int(model.optimizer.iterations) == 4
    assert len(traces) == 1

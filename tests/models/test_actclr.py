"""ActCLR: similarity mining, KL loss, anchors, training step and fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.errors import KskelError
from kskel.models import actclr
from kskel.models.actclr import ActCLR
from kskel.models.moco import EpochTracker
from kskel.optimizers import TorchSGD

SMALL = {"base_width": 4, "hidden_dim": 16}
VIEW = (2, 16, 25, 3)


def _model(**kwargs):
    options = {
        "encoder_config": SMALL,
        "feature_dim": 8,
        "queue_size": 64,
        "topk": 16,
        "input_shape": VIEW,
    }
    options.update(kwargs)
    model = ActCLR(**options)
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9, l2=1e-4), jit_compile=False
    )
    # Slots built up front: `fit` then traces its step function once.
    model.optimizer.build(model.query.trainable_variables)
    return model


def _views(rng, n=4):
    return tuple(
        tf.constant(rng.normal(size=(n, *VIEW)).astype("float32"))
        for _ in range(4)
    )


def test_select_topk_matches_numpy(rng):
    query = rng.normal(size=(3, 20)).astype("float32")
    key = rng.uniform(-1, 1, size=(3, 20)).astype("float32")
    key[0, 4] = 0.97  # a near-duplicate: filtered to -1
    key[1, 7] = 0.999
    q_top, k_top = actclr.select_topk(query, key, 5)
    filtered = np.where(key > 0.95, -1.0, key)
    order = np.argsort(-filtered, axis=1)[:, :5]
    expected_k = np.take_along_axis(filtered, order, 1)
    expected_q = np.take_along_axis(query, order, 1)
    # Unsorted: the same (query, key) pairs in some order per row.
    ours = np.argsort(-np.asarray(k_top), axis=1)
    np.testing.assert_allclose(
        np.take_along_axis(np.asarray(k_top), ours, 1), expected_k, rtol=1e-6
    )
    np.testing.assert_allclose(
        np.take_along_axis(np.asarray(q_top), ours, 1), expected_q, rtol=1e-6
    )
    assert 0.97 not in np.asarray(k_top)
    kl = actclr.similarity_kl(q_top, k_top)
    expected_kl = actclr.similarity_kl(expected_q, expected_k)
    assert float(kl) == pytest.approx(float(expected_kl), rel=1e-5)


def _log_softmax(x):
    x = x - x.max(1, keepdims=True)
    return x - np.log(np.exp(x).sum(1, keepdims=True))


def test_similarity_kl_matches_numpy(rng):
    query = rng.uniform(0, 1, size=(4, 16)).astype("float64")
    key = rng.uniform(-1, 1, size=(4, 16)).astype("float64")
    log_q = _log_softmax(query / 0.1)
    log_k = _log_softmax(key / 0.04)
    expected = (np.exp(log_k) * (log_k - log_q)).sum() / 4
    kl = actclr.similarity_kl(
        tf.constant(query, tf.float32), tf.constant(key, tf.float32)
    )
    assert float(kl) == pytest.approx(expected, rel=1e-4)
    same = actclr.similarity_kl(
        tf.constant(key * 2.5, tf.float32), tf.constant(key, tf.float32)
    )
    assert float(same) == pytest.approx(0.0, abs=1e-5)  # 0.1 = 2.5 x 0.04


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"anchor": "median"}, "anchor"),
        ({"mask_axis": "time"}, "mask_axis"),
        ({"kc_mode": "broadcast"}, "kc_mode"),
        ({"ske_trans_mode": "v2024"}, "ske_trans_mode"),
        ({"stream": "velocity"}, "stream"),
        ({"topk": 0}, "topk"),
        ({"tau_k": -1.0}, "tau_k"),
        ({"safp_mix": 1.5}, "safp_mix"),
        ({"query_similarity": "dot"}, "query_similarity"),
        ({"mask_threshold": 1.5}, "mask_threshold"),
        ({"gradient_activation": "abs"}, "gradient_activation"),
        ({"mask_smoothing": "graph"}, "mask_smoothing"),
        ({"input_shape": (2, 3, 25, 3)}, "frames"),
    ],
)
def test_invalid_flags_raise(kwargs, match):
    with pytest.raises(KskelError, match=match):
        ActCLR(**{"encoder_config": SMALL, "feature_dim": 8, **kwargs})


def test_train_step_trains_and_enqueues(rng):
    model = _model(momentum=0.9)
    query_before = [np.asarray(q) for _, q in model._ema_pairs]
    queue_before = np.asarray(model.queue)
    logs = model.train_step(_views(rng))
    assert set(logs) == {"loss", "kl_a", "kl_b", "kl_c", "actionlet_mean"}
    terms = [float(logs[name]) for name in ("kl_a", "kl_b", "kl_c")]
    assert all(np.isfinite(t) and t >= 0.0 for t in terms)
    assert float(logs["loss"]) == pytest.approx(sum(terms), rel=1e-5)
    assert 0.0 <= float(logs["actionlet_mean"]) <= 1.0
    moved = [
        not np.allclose(np.asarray(q), q0)
        for (_, q), q0 in zip(model._ema_pairs, query_before)
    ]
    assert any(moved)
    assert int(model.queue_ptr) == 4
    queue = np.asarray(model.queue)
    assert not np.allclose(queue[:4], queue_before[:4])
    np.testing.assert_array_equal(queue[4:], queue_before[4:])
    np.testing.assert_allclose(np.linalg.norm(queue[:4], axis=1), 1.0, 1e-5)


def test_v2023_kc_needs_batch_equal_to_feature_dim(rng):
    model = _model(kc_mode="v2023_broadcast")
    with pytest.raises(KskelError, match="feature dimension 8"):
        model.train_step(_views(rng, n=4))
    loss, _, _ = model.contrastive_loss(_views(rng, n=8))  # N == D runs
    assert np.isfinite(float(loss))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream": "motion", "mask_axis": "head_collapse"},
        {"stream": "bone", "safp_mix": 1.0},
        {"ske_trans_mode": "v2023", "anchor": "dataset_mean"},
    ],
)
def test_other_modes_run(rng, kwargs):
    loss, metrics, keys = _model(**kwargs).contrastive_loss(_views(rng))
    assert np.isfinite(float(loss))
    assert float(loss) == pytest.approx(
        sum(float(metrics[k]) for k in ("kl_a", "kl_b", "kl_c")), rel=1e-5
    )
    norms = np.linalg.norm(keys, axis=1)
    if kwargs.get("safp_mix", 0.5) < 1.0:
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    else:
        # Pure SAFP: a sample whose actionlet is empty pools to zero (the
        # 1e-5 guard), and normalising zero gives zero, as in torch.
        assert np.all((np.abs(norms - 1.0) < 1e-5) | (norms == 0.0))


def test_query_similarity_squares_only_in_official_mode(rng):
    model = _model(encoder_config={**SMALL, "dropout": 0.0})
    x = _views(rng, n=8)[1]
    queue = tf.constant(np.asarray(model.queue))
    squared = np.asarray(model._query_similarities(x, queue))
    model.query_similarity = "cosine"
    cosine = np.asarray(model._query_similarities(x, queue))
    # Paper Eq. 9: signed cosines, as the key side; a random queue holds
    # entries opposite each query, which the official square turns into
    # similar ones.
    assert cosine.min() < -0.1 and cosine.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(squared, np.square(cosine), rtol=1e-5, atol=1e-6)


def test_fit_two_epochs_fills_the_queue(rng):
    model = _model()
    views = _views(rng, n=32)
    queue_before = np.asarray(model.queue)
    dataset = tf.data.Dataset.from_tensor_slices(views).batch(4)
    history = model.fit(
        dataset, epochs=2, verbose=0, callbacks=[EpochTracker()]
    )
    assert int(model.epoch) == 2
    assert np.isfinite(history.history["loss"]).all()
    # 2 epochs x 8 steps x 4 keys = 64 = K: every entry was replaced.
    assert int(model.queue_ptr) == 0
    queue = np.asarray(model.queue)
    assert not np.isclose(queue, queue_before).all(axis=1).any()
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1.0, rtol=1e-5)


def test_actionlet_shape_and_dataset_mean_anchor(rng):
    x = _views(rng, n=4)[0]
    model = _model()
    mask = np.asarray(model.actionlet(x))
    assert mask.shape == (4, 2, 4, 25)
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    with pytest.raises(KskelError, match="dataset_mean"):
        model.set_average_motion(np.zeros(VIEW))

    paper = _model(anchor="dataset_mean")
    with pytest.raises(KskelError, match="expected shape"):
        paper.set_average_motion(np.zeros((2, 50, 25, 3)))
    mean = actclr.average_motion([np.asarray(x[:3]), np.asarray(x[3:])])
    np.testing.assert_allclose(mean, np.asarray(x).mean(0), atol=1e-6)
    paper.set_average_motion(mean)
    np.testing.assert_allclose(np.asarray(paper.average_motion), mean)
    # The paper's anchor is fixed; the official one follows the batch.
    np.testing.assert_array_equal(
        paper.anchor_feature(x[:1]), paper.anchor_feature(x)
    )
    assert not np.allclose(
        model.anchor_feature(x[:1], training=False),
        model.anchor_feature(x, training=False),
        rtol=1e-3,
        atol=0.0,
    )
    # So in inference mode a sample's actionlet does not depend on the rest
    # of the batch (up to round-off amplified by 1e8 in a few cells).
    alone = np.asarray(paper.actionlet(x[:1]))[0]
    in_batch = np.asarray(paper.actionlet(x))[0]
    assert np.mean(np.abs(alone - in_batch) < 1e-3) > 0.9


def test_get_config_round_trip(tmp_path):
    model = _model(
        anchor="dataset_mean",
        mask_axis="head_collapse",
        stream="bone",
        topk=32,
        safp_mix=0.75,
        query_similarity="cosine",
        mask_threshold=0.25,
        gradient_activation="relu",
        mask_smoothing="adjacency",
        seed=3,
    )
    config = model.get_config()
    clone = ActCLR.from_config(config)
    assert clone.get_config() == config
    assert (clone.stream, clone.topk, clone.safp_mix) == ("bone", 32, 0.75)
    assert clone.query_similarity == "cosine"
    assert clone.mask_threshold == 0.25
    assert (clone.gradient_activation, clone.mask_smoothing) == (
        "relu",
        "adjacency",
    )
    model.set_average_motion(np.full(VIEW, 0.5, "float32"))
    path = tmp_path / "actclr.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ActCLR)
    assert loaded.get_config() == config
    np.testing.assert_array_equal(
        np.asarray(loaded.average_motion), np.asarray(model.average_motion)
    )
    np.testing.assert_array_equal(
        np.asarray(loaded.queue), np.asarray(model.queue)
    )

"""AimCLR: EADM against the official formula, D3M and NNM losses, a step."""

import numpy as np
import pytest
import tensorflow as tf

from kskel.models import AimCLR
from kskel.models import losses
from kskel.models.eadm import attention_drop
from kskel.optimizers import TorchSGD


def official_simam_drop(x, keep_prob=0.7, lam=1e-4):
    """FACTS §6.3 in the official (N*M, C, T', V) layout, numpy."""
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean(axis=(2, 3), keepdims=True)) ** 2
    y = d / (4 * (d.sum(axis=(2, 3), keepdims=True) / n + lam)) + 0.5
    a = 1 / (1 + np.exp(-y))
    a_s = a.mean(axis=(1, 2))  # (NM, V)
    mask_s = (a_s < keep_prob).astype(x.dtype)
    x1 = x * mask_s[:, None, None, :] * (mask_s.size / mask_s.sum())
    mask_t = (a < keep_prob).astype(x.dtype)
    return x1 * mask_t * (mask_t.size / mask_t.sum())


def test_attention_drop_matches_official(rng):
    x = rng.normal(size=(4, 16, 13, 25)).astype("float32")  # (NM, C, T, V)
    expected = official_simam_drop(x)
    got = attention_drop(np.transpose(x, (0, 2, 3, 1)))
    np.testing.assert_allclose(
        np.transpose(np.asarray(got), (0, 3, 1, 2)),
        expected,
        rtol=1e-4,
        atol=1e-5,
    )
    dropped = float((expected == 0).mean())
    assert 0.15 < dropped < 0.6  # About a quarter per mask on Gaussians.


def test_soft_cross_entropy_and_nnm_match_numpy(rng):
    logits = rng.normal(size=(3, 6)).astype("float32")
    target = rng.dirichlet(np.ones(6), size=3).astype("float32")
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert float(losses.soft_cross_entropy(target, logits)) == pytest.approx(
        -(target * log_p).sum(1).mean(), rel=1e-5
    )
    positives = np.zeros((3, 6), "float32")
    positives[:, 0] = 1
    positives[0, 3] = positives[2, [1, 5]] = 1
    expected = -((positives * log_p).sum(1) / positives.sum(1)).mean()
    assert float(losses.multi_positive_nce(logits, positives)) == pytest.approx(
        expected, rel=1e-5
    )
    only_key = np.eye(6, dtype="float32")[[0, 0, 0]]
    assert float(losses.multi_positive_nce(logits, only_key)) == (
        pytest.approx(float(losses.info_nce(logits)), rel=1e-5)
    )


@pytest.fixture(scope="module")
def model():
    model = AimCLR(
        encoder_config={"base_width": 4, "hidden_dim": 16},
        feature_dim=8,
        queue_size=16,
        input_shape=(2, 12, 25, 3),
        mining_epoch=1,
        topk=2,
    )
    model.compile(optimizer=TorchSGD(0.1), jit_compile=False)
    return model


def _views(seed, n=4):
    rng = np.random.default_rng(seed)
    return tuple(
        tf.constant(rng.normal(size=(n, 2, 12, 25, 3)).astype("float32"))
        for _ in range(3)
    )


def test_mined_positives_are_the_top_neighbours(model):
    queries = [
        losses.l2_normalize(tf.random.normal((4, 8), seed=i)) for i in range(3)
    ]
    mask = np.asarray(model._mined_positives(queries))
    assert mask.shape == (4, 17)
    np.testing.assert_array_equal(mask[:, 0], 1.0)
    queue = np.asarray(model.queue)
    for i in range(4):
        expected = set()
        for q in queries:
            expected |= set(np.argsort(-(np.asarray(q)[i] @ queue.T))[:2])
        assert set(np.flatnonzero(mask[i, 1:])) == expected


def test_train_steps_before_and_after_mining(model):
    model.epoch.assign(1)
    before = model.train_step(_views(0))
    assert float(before["nnm_positives"]) >= 1.0
    model.epoch.assign(2)  # > mining_epoch: NNM replaces InfoNCE.
    after = model.train_step(_views(1))
    assert np.isfinite(float(after["loss"]))
    assert float(after["ddm_loss"]) > 0.0


def test_config_round_trip(model):
    clone = AimCLR.from_config(model.get_config())
    assert clone.get_config() == model.get_config()

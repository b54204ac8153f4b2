"""The ST-GCN encoder: official parameter counts, shapes, pooling, saving."""

import keras
import numpy as np
import pytest

from kskel.encoders import SkeletonClassifier
from kskel.encoders import STGCNEncoder
from kskel.layers import ProjectionHead


def _num_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.fixture(scope="module")
def encoder():
    model = STGCNEncoder()
    model.build((None, 2, 50, 25, 3))
    return model


def test_parameter_counts_equal_official(encoder):
    # FACTS §2.4: backbone 821,380; + fc 60 = 836,800; + MLP = 920,068.
    assert _num_trainable(encoder) == 821_380
    classifier = SkeletonClassifier(STGCNEncoder(), 60)
    classifier.build((None, 2, 50, 25, 3))
    assert _num_trainable(classifier) == 836_800
    query = SkeletonClassifier(STGCNEncoder(), ProjectionHead(256, 128))
    query.build((None, 2, 50, 25, 3))
    assert _num_trainable(query) == 920_068


def test_shapes(encoder, rng):
    x = rng.normal(size=(3, 2, 50, 25, 3)).astype("float32")
    h = encoder.feature_map(x, training=False)
    assert tuple(h.shape) == (6, 13, 25, 256)
    assert tuple(encoder(x, training=False).shape) == (3, 256)


def test_pooling_folds_bodies_in_sample_major_order(encoder, rng):
    x = rng.normal(size=(2, 2, 50, 25, 3)).astype("float32")
    h = np.asarray(encoder.feature_map(x, training=False))
    pooled = np.asarray(encoder.pool(h, 2))
    expected = h.mean(axis=(1, 2)).reshape(2, 2, -1).mean(axis=1)
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    # Each sample depends on its own bodies only.
    x2 = x.copy()
    x2[1] += 1.0
    a = np.asarray(encoder(x, training=False))
    b = np.asarray(encoder(x2, training=False))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[1], b[1])


def test_weighted_pool_with_uniform_weights_is_mean(encoder, rng):
    h = rng.normal(size=(4, 13, 25, 256)).astype("float32")
    plain = np.asarray(encoder.pool(h, 2))
    weighted = np.asarray(encoder.pool(h, 2, weights=np.ones((4, 13, 25))))
    np.testing.assert_allclose(weighted, plain, rtol=1e-4, atol=1e-6)


def test_base_width_is_configurable():
    small = STGCNEncoder(base_width=8, hidden_dim=64)
    out = small(np.zeros((1, 2, 20, 25, 3), "float32"))
    assert tuple(out.shape) == (1, 64)


def test_keras_file_round_trip_gives_identical_outputs(tmp_path, rng):
    model = SkeletonClassifier(STGCNEncoder(), 10)
    x = rng.normal(size=(2, 2, 50, 25, 3)).astype("float32")
    before = np.asarray(model(x, training=False))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(
        np.asarray(restored(x, training=False)), before
    )
    assert restored.encoder.get_config() == model.encoder.get_config()


def test_wrong_input_rank_or_joints_rejected():
    with pytest.raises(ValueError, match=r"\(N, M, T, V, C\)"):
        STGCNEncoder().build((None, 50, 25, 3))
    with pytest.raises(ValueError, match="V=25"):
        STGCNEncoder().build((None, 2, 50, 18, 3))

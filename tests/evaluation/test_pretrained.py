"""The starting network of an evaluation: pretrained or random init."""

import numpy as np
import pytest

from data_prep import synthetic
from kskel.errors import KskelError
from kskel.evaluation import features
from kskel.evaluation import pretrained


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(str(path), 120, seed=0, num_frames=20)
    return str(path)


def test_batch_norm_statistics_make_random_features_informative(data_dir):
    network = pretrained.random_network(
        {"base_width": 4, "hidden_dim": 16}, seed=0
    )
    before, _ = features.extract(network, data_dir, "test")
    weights = [np.asarray(w) for w in network.trainable_weights]
    pretrained.estimate_batch_norm_statistics(network, data_dir, "train")
    after, _ = features.extract(network, data_dir, "test")
    # Initial 0/1 statistics: features vanish; data statistics: O(1)
    # features that differ from sample to sample.
    assert np.abs(before).mean() < 1e-5
    assert np.abs(after).mean() > 0.05
    assert after.std(0).mean() > 0.05 * np.abs(after).mean()
    for w, value in zip(network.trainable_weights, weights):
        np.testing.assert_array_equal(np.asarray(w), value)
    momenta = {
        layer.momentum
        for layer in network.encoder._flatten_layers(include_self=False)
        if hasattr(layer, "moving_variance")
    }
    assert momenta == {0.9}


def test_pretrained_or_random_init_is_required():
    with pytest.raises(KskelError, match="--pretrained: required"):
        pretrained.starting_network("", False, {})
    with pytest.raises(KskelError, match="--pretrained=nowhere: not found"):
        pretrained.starting_network("nowhere", False, {})

"""The KNN protocol: hand-computed votes, the files a run writes, the
feature source it picks and its errors."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from data_prep import synthetic
from kskel.data import pipeline
from kskel.data import schema
from kskel.encoders import SkeletonClassifier
from kskel.encoders import STGCNEncoder
from kskel.errors import KskelError
from kskel.evaluation import features
from kskel.evaluation.knn import knn_predict
from kskel.evaluation.knn import topk_accuracy
from kskel.evaluation.knn_eval import KnnConfig
from kskel.evaluation.knn_eval import feature_source
from kskel.evaluation.knn_eval import knn_scores
from kskel.evaluation.knn_eval import run_knn
from kskel.flag_config import config_from_flagfile
from kskel.layers.projection_head import ProjectionHead

FRAMES = 20


def test_votes_are_weighted_by_similarity_over_temperature():
    """One near neighbour of class 0 against two farther ones of class 1.

    Cosine similarities to the query (1, 0): 1 (class 0), 0.8 and 0.8
    (class 1, unnormalised (4, 3)), 0 (class 2). With k = 3 class 0 gets
    exp(1 / t), class 1 gets 2 exp(0.8 / t): at t = 0.1, 22026 > 5962
    (class 0 wins); at t = 1, 2.72 < 4.45 (class 1 wins).
    """
    bank = np.array([[1, 0], [4, 3], [4, 3], [0, 2]], "float32")
    bank_labels = np.array([0, 1, 1, 2])
    query, label = np.array([[1, 0]], "float32"), np.array([0])
    scores, top1 = knn_scores(bank, bank_labels, query, label, 3, k=3, t=0.1)
    np.testing.assert_allclose(
        scores[0], [np.exp(10), 2 * np.exp(8), 0], rtol=1e-5
    )
    assert top1["3"] == 1.0
    assert set(top1) == {"3", "10", "20", "40"}
    _, top1 = knn_scores(bank, bank_labels, query, label, 3, k=3, t=1.0)
    assert top1["3"] == 0.0
    assert top1["10"] == 0.0  # k > 4 takes the whole bank: e < 2e^0.8 + 1.


def _random_encoder(data_dir):
    """A random encoder whose features are O(1) (see test_linear.py)."""
    keras.utils.set_random_seed(0)
    encoder = STGCNEncoder(base_width=4, hidden_dim=32)
    encoder.build((None, 2, FRAMES, 25, 3))
    x, _ = next(
        iter(pipeline.make_dataset(data_dir, "train", 64, training=False))
    )
    scale = float(np.mean(np.abs(encoder(x, training=False))))
    encoder.data_bn.gamma.assign(encoder.data_bn.gamma / scale)
    return encoder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(str(path), 200, seed=0, num_frames=FRAMES)
    return str(path)


@pytest.fixture(scope="module")
def query_network(tmp_path_factory, data_dir):
    network = SkeletonClassifier(
        _random_encoder(data_dir), ProjectionHead(32, 16)
    )
    network.build((None, 2, FRAMES, 25, 3))
    path = tmp_path_factory.mktemp("query") / "query.keras"
    network.save(path)
    return network, str(path)


def _config(data_dir, model_dir, **overrides):
    return KnnConfig(
        data_dir=str(data_dir), model_dir=str(model_dir), **overrides
    )


def test_run_writes_consistent_results(query_network, data_dir, tmp_path):
    network, path = query_network
    results = run_knn(_config(data_dir, tmp_path, pretrained=path))
    assert json.loads((tmp_path / "results.json").read_text()) == results
    logits = np.load(tmp_path / "test_logits.npy")
    labels = np.load(tmp_path / "test_labels.npy")
    assert results["protocol"] == "knn" and results["method"] == "unknown"
    assert results["features"] == "projection"  # auto: a projection head.
    assert results["feature_dim"] == 16 and results["num_bank_samples"] == 140
    assert results["num_samples"] == 30 and logits.shape == (30, 16)
    assert set(results["knn"]) == {"10", "20", "40"}
    assert results["top1"] == results["knn"]["20"]
    assert results["top1"] == topk_accuracy(logits, labels, 1)
    assert results["top5"] == topk_accuracy(logits, labels, 5)
    # The bank is the train split's projection output, queries the test's.
    bank, bank_labels = features.extract(
        network, data_dir, "train", projection=True
    )
    queries, expected_labels = features.extract(
        network, data_dir, "test", projection=True
    )
    np.testing.assert_array_equal(labels, expected_labels)
    expected = knn_predict(bank, bank_labels, queries, 16, k=20)
    np.testing.assert_allclose(logits, expected, rtol=1e-4)


def test_feature_source_follows_the_head():
    encoder = STGCNEncoder(base_width=4, hidden_dim=8)
    query = SkeletonClassifier(encoder, ProjectionHead(8, 4))
    classifier = SkeletonClassifier(encoder, 5)
    assert feature_source(query, "auto") == "projection"
    assert feature_source(query, "encoder") == "encoder"
    assert feature_source(classifier, "auto") == "encoder"
    with pytest.raises(KskelError, match="--features=projection"):
        feature_source(classifier, "projection")


def _openpose_dataset(path):
    rng = np.random.default_rng(0)

    def samples(n):
        return [
            schema.Sample(
                rng.normal(size=(2, FRAMES, 18, 3)).astype("float32"),
                label=i % 2,
                name=f"s{i}",
                num_frames=FRAMES,
            )
            for i in range(n)
        ]

    schema.write_dataset(
        path,
        {"train": samples(4), "test": samples(2), "empty": []},
        layout="openpose18",
        class_names=["a", "b"],
        preprocessing={},
    )
    return str(path)


@pytest.fixture(scope="module")
def openpose(tmp_path_factory):
    """A tiny OpenPose-18 dataset (train 4, test 2, empty 0 samples)."""
    return _openpose_dataset(tmp_path_factory.mktemp("openpose"))


def test_errors(query_network, data_dir, openpose, tmp_path):
    _, path = query_network
    out = tmp_path / "out"
    with pytest.raises(KskelError, match="'ntu25' joint layout"):
        run_knn(_config(openpose, out, pretrained=path))
    with pytest.raises(KskelError, match="--train_split=empty: .* no samp"):
        run_knn(_config(openpose, out, random_init=True, train_split="empty"))
    with pytest.raises(KskelError, match="--test_split=val2: .* no such"):
        run_knn(_config(data_dir, out, pretrained=path, test_split="val2"))
    with pytest.raises(KskelError, match="--pretrained=nope.keras: not found"):
        _config(data_dir, out, pretrained="nope.keras").validate()
    with pytest.raises(KskelError, match="--k=0"):
        _config(data_dir, out, random_init=True, k=0).validate()
    with pytest.raises(KskelError, match="--features='pca'"):
        _config(data_dir, out, random_init=True, features="pca").validate()
    assert not out.exists()


def test_cli_random_init_baseline(openpose, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.knn",
            "--random_init",
            "--base_width=4",
            "--hidden_dim=8",
            "--k=3",
            f"--data_dir={openpose}",
            f"--model_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["method"] == "random_init" and results["k"] == 3
    assert results["features"] == "encoder" and results["feature_dim"] == 8
    assert set(results["knn"]) == {"3", "10", "20", "40"}
    assert results["top1"] == results["knn"]["3"]
    assert results["num_samples"] == 2 and results["num_bank_samples"] == 4
    assert "KNN top-1" in result.stdout


ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["knn.cfg", "knn_demo.cfg"])
def test_flag_files_hold_the_official_settings(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = config_from_flagfile(KnnConfig, f"configs/{name}")
    assert (config.k, config.temperature) == (20, 0.1)
    assert config.features in ("projection", "auto")
    dataclasses.replace(config, pretrained="", random_init=True).validate()

"""Linear evaluation: the official SGD loop on fixed features, the
classifier it writes, evaluation of a classifier's own head, clear errors."""

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
from kskel.encoders import linear_head
from kskel.errors import KskelError
from kskel.evaluation.knn import topk_accuracy
from kskel.evaluation.linear import LinearEvalConfig
from kskel.evaluation.linear import fit_linear_head
from kskel.evaluation.linear import run_linear_eval
from kskel.evaluation.linear import steps_per_epoch
from kskel.flag_config import config_from_flagfile
from kskel.inference import load_model
from kskel.inference import predict
from kskel.layers.projection_head import ProjectionHead

FRAMES = 20


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """200 synthetic samples (train 140, val 30, test 30), 16 classes."""
    path = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(str(path), 200, seed=0, num_frames=FRAMES)
    return str(path)


@pytest.fixture(scope="module")
def query_network(tmp_path_factory, data_dir):
    """A random query network (projection head) in a pretraining dir.

    With the official init the eval-mode encoder is positively homogeneous
    (zero biases, unit running variances) and its features are ~1e-7, too
    small for any logit to depend on them; raising data BN's scale makes
    them O(1) without changing their directions.
    """
    keras.utils.set_random_seed(0)
    encoder = STGCNEncoder(base_width=4, hidden_dim=32)
    network = SkeletonClassifier(encoder, ProjectionHead(32, 16))
    network.build((None, 2, FRAMES, 25, 3))
    x, _ = next(
        iter(pipeline.make_dataset(data_dir, "train", 64, training=False))
    )
    scale = float(np.mean(np.abs(encoder(x, training=False))))
    encoder.data_bn.gamma.assign(encoder.data_bn.gamma / scale)
    run_dir = tmp_path_factory.mktemp("pretrain")
    network.save(run_dir / "query_network.keras")
    (run_dir / "config.json").write_text(json.dumps({"method": "actclr"}))
    return str(run_dir)


def _config(data_dir, model_dir, **overrides):
    values = {
        "data_dir": str(data_dir),
        "model_dir": str(model_dir),
        "batch_size": 32,
        "epochs": 6,
        "learning_rate": 0.03,
        "lr_milestones": (5,),
    }
    values.update(overrides)
    return LinearEvalConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, query_network):
    out = tmp_path_factory.mktemp("linear")
    results = run_linear_eval(_config(data_dir, out, pretrained=query_network))
    return results, out


def _test_split(data_dir):
    batches = list(pipeline.make_dataset(data_dir, "test", 64, training=False))
    x = np.concatenate([np.asarray(b[0]) for b in batches])
    y = np.concatenate([np.asarray(b[1]) for b in batches])
    return x, y


def test_results_agree_with_logits_and_history(trained, data_dir):
    results, out = trained
    assert json.loads((out / "results.json").read_text()) == results
    logits = np.load(out / "test_logits.npy")
    labels = np.load(out / "test_labels.npy")
    assert logits.shape == (30, 16) and logits.dtype == np.float32
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, _test_split(data_dir)[1])
    assert results["protocol"] == "linear"
    assert results["method"] == "actclr"  # From the run's config.json.
    assert results["num_samples"] == 30
    assert results["top1"] == topk_accuracy(logits, labels, 1)
    assert results["top5"] == topk_accuracy(logits, labels, 5)
    history = results["history"]
    assert [h["epoch"] for h in history] == [5, 6]  # Every 5 and the last.
    assert history[-1]["top1"] == results["top1"]
    assert results["best_top1"] == max(h["top1"] for h in history)
    assert results["flags"]["learning_rate"] == 0.03
    assert "| actclr | linear | joint |" in (out / "results.md").read_text()


def test_classifier_reproduces_logits_with_frozen_encoder(
    trained, data_dir, query_network
):
    results, out = trained
    classifier = load_model(out / "classifier.keras")
    assert classifier.is_classifier and classifier.num_outputs == 16
    x, y = _test_split(data_dir)
    logits = predict(classifier, x, batch_size=16)
    expected = np.load(out / "test_logits.npy")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * scale)
    # The logits depend on the sample (not just on the bias) ...
    assert np.ptp(expected, axis=0).max() > 0.1 * scale
    assert np.mean(logits.argmax(1) == y) == results["top1"]
    # ... and the encoder was not trained.
    source = load_model(f"{query_network}/query_network.keras").encoder
    for got, want in zip(classifier.encoder.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_folded_standardisation_gives_the_same_logits(rng):
    from kskel.evaluation.linear import feature_standardisation
    from kskel.evaluation.linear import fold_standardisation

    x = rng.normal(3.0, 0.01, size=(50, 6)).astype("float32")
    x[:, 2] = 5.0  # A dimension that never varies.
    mean, scale = feature_standardisation(x)
    assert scale[2] == 1.0
    standardised = (x - mean) / scale
    np.testing.assert_allclose(standardised.std(0)[[0, 1, 3]], 1, rtol=1e-4)
    head = keras.layers.Dense(4)
    head.build((None, 6))
    head.set_weights([rng.normal(size=(6, 4)), rng.normal(size=4)])
    expected = np.asarray(head(standardised.astype("float32")))
    fold_standardisation(head, mean, scale)
    np.testing.assert_allclose(np.asarray(head(x)), expected, atol=1e-3)


def test_standardised_probe_saves_a_classifier_on_raw_inputs(
    data_dir, query_network, tmp_path
):
    config = _config(
        data_dir,
        tmp_path / "std",
        pretrained=query_network,
        standardize_features=True,
    )
    results = run_linear_eval(config)
    assert results["flags"]["standardize_features"] is True
    classifier = load_model(tmp_path / "std" / "classifier.keras")
    assert classifier.is_classifier
    x, y = _test_split(data_dir)
    logits = predict(classifier, x, batch_size=16)
    expected = np.load(tmp_path / "std" / "test_logits.npy")
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-3 * scale)
    assert np.mean(logits.argmax(1) == y) == results["top1"]


def test_own_head_with_zero_epochs(trained, data_dir, tmp_path):
    results, out = trained
    config = _config(
        data_dir, tmp_path, pretrained=str(out / "classifier.keras"), epochs=0
    )
    own = run_linear_eval(config)
    expected = np.load(out / "test_logits.npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "test_logits.npy"),
        expected,
        rtol=1e-4,
        atol=1e-4 * np.abs(expected).max(),
    )
    assert own["top1"] == results["top1"] and own["head"] == "own"
    assert own["history"] == [] and own["best_top1"] == own["top1"]
    assert not (tmp_path / "classifier.keras").exists()


def test_head_learns_separable_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(16, 32)) * 2

    def draw(n):
        y = np.arange(n) % 16
        return (centers[y] + rng.normal(size=(n, 32))).astype("float32"), y

    config = LinearEvalConfig(
        epochs=10, batch_size=32, learning_rate=0.1, lr_milestones=(8,)
    )
    _, logits, history = fit_linear_head(config, draw(320), draw(160), 16)
    assert history[-1]["top1"] > 0.9  # Chance: 1/16.
    assert history[-1]["loss"] < 0.5
    assert logits.shape == (160, 16)


def _softmax_grad(x, y, w, b):
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.mean(np.log(p[np.arange(len(y)), y]))
    d = (p - np.eye(w.shape[1])[y]) / len(y)
    return loss, x.T @ d, d.sum(0)


def test_two_steps_are_torch_sgd_with_coupled_decay_and_step_lr(rng):
    """Full batches: epoch 1 at lr, epoch 2 at 0.1 lr (milestone 1)."""
    x = rng.normal(size=(8, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    head = linear_head(4)
    head.build((None, 3))
    head.kernel.assign(rng.normal(size=(3, 4)).astype("float32"))
    head.bias.assign(rng.normal(size=4).astype("float32"))
    w0, b0 = np.asarray(head.kernel, np.float64), np.asarray(head.bias)
    lr, wd, momentum = 0.5, 0.01, 0.9
    config = LinearEvalConfig(
        epochs=2,
        batch_size=8,
        learning_rate=lr,
        lr_milestones=(1,),
        weight_decay=wd,
        sgd_momentum=momentum,
        eval_interval=1,
    )
    _, _, history = fit_linear_head(config, (x, y), (x, y), 4, head=head)

    loss0, gw, gb = _softmax_grad(x, y, w0, b0)
    buf_w, buf_b = gw + wd * w0, gb + wd * b0
    w1, b1 = w0 - lr * buf_w, b0 - lr * buf_b
    loss1, gw, gb = _softmax_grad(x, y, w1, b1)
    buf_w = momentum * buf_w + gw + wd * w1
    buf_b = momentum * buf_b + gb + wd * b1
    w2, b2 = w1 - 0.1 * lr * buf_w, b1 - 0.1 * lr * buf_b
    np.testing.assert_allclose(np.asarray(head.kernel), w2, atol=1e-5)
    np.testing.assert_allclose(np.asarray(head.bias), b2, atol=1e-5)
    # The loss of an epoch is measured before its update.
    np.testing.assert_allclose(
        [h["loss"] for h in history], [loss0, loss1], rtol=1e-5
    )


def test_steps_per_epoch_drops_the_last_batch_like_the_official_loader():
    config = LinearEvalConfig(batch_size=32)
    assert steps_per_epoch(config, 100) == 3
    no_drop = dataclasses.replace(config, drop_last=False)
    assert steps_per_epoch(no_drop, 100) == 4
    capped = dataclasses.replace(config, steps_per_epoch=2)
    assert steps_per_epoch(capped, 100) == 2
    with pytest.raises(KskelError, match="--batch_size=32 is larger"):
        steps_per_epoch(config, 20)


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
def openpose_dir(tmp_path_factory):
    return _openpose_dataset(tmp_path_factory.mktemp("openpose"))


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    model = SkeletonClassifier(STGCNEncoder(base_width=4, hidden_dim=8), 5)
    model.build((None, 2, FRAMES, 25, 3))
    path = tmp_path_factory.mktemp("classifier") / "five.keras"
    model.save(path)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("layout", "expects the 'ntu25' joint layout, the dataset uses"),
        ("unknown_split", "--test_split=nope: .* no such split"),
        ("empty_split", "--test_split=empty: .* has no samples"),
        ("class_count", "5 classes, the dataset .* has 16"),
        ("not_classifier", "--epochs=0: .* has a projection head"),
    ],
)
def test_clear_errors_and_nothing_written(
    case,
    message,
    data_dir,
    openpose_dir,
    query_network,
    small_classifier,
    tmp_path,
):
    out = tmp_path / "out"
    config = {
        "layout": _config(openpose_dir, out, pretrained=query_network),
        "unknown_split": _config(
            data_dir, out, pretrained=query_network, test_split="nope"
        ),
        "empty_split": _config(
            openpose_dir, out, random_init=True, test_split="empty"
        ),
        "class_count": _config(
            data_dir, out, pretrained=small_classifier, epochs=0
        ),
        "not_classifier": _config(
            data_dir, out, pretrained=query_network, epochs=0
        ),
    }[case]
    with pytest.raises(KskelError, match=message):
        run_linear_eval(config)
    assert not out.exists()


def test_bad_flags_are_reported_before_any_data(tmp_path):
    missing = _config(tmp_path / "no_data", tmp_path, pretrained="x.keras")
    with pytest.raises(KskelError, match="--pretrained=x.keras: not found"):
        missing.validate()
    with pytest.raises(KskelError, match="--epochs=0 .* --random_init"):
        _config("d", "m", random_init=True, epochs=0).validate()
    with pytest.raises(KskelError, match="--lr_milestones"):
        _config("d", "m", random_init=True, lr_milestones=(0,)).validate()


def test_cli_prints_one_error_line(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.linear_eval",
            f"--pretrained={tmp_path / 'missing'}",
            f"--data_dir={tmp_path}",
            f"--model_dir={out}",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    errors = [
        line for line in result.stderr.splitlines() if "error" in line.lower()
    ]
    assert errors == [f"error: --pretrained={tmp_path / 'missing'}: not found."]
    assert not out.exists()


ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_flag_files_hold_the_official_settings(monkeypatch):
    monkeypatch.chdir(ROOT)  # Nested --flagfile paths are repo-relative.
    aimclr = config_from_flagfile(LinearEvalConfig, "configs/linear_eval.cfg")
    actclr = config_from_flagfile(
        LinearEvalConfig, "configs/linear_eval_actclr.cfg"
    )
    demo = config_from_flagfile(
        LinearEvalConfig, "configs/linear_eval_demo.cfg"
    )
    settings = ("learning_rate", "batch_size", "epochs", "lr_milestones")
    assert [getattr(aimclr, k) for k in settings] == [3.0, 128, 100, (80,)]
    assert [getattr(actclr, k) for k in settings] == [24.0, 1024, 100, (80,)]
    for config in (aimclr, actclr):
        assert config.weight_decay == 0 and not config.nesterov
        assert config.sgd_momentum == 0.9 and config.drop_last
        assert config.eval_interval == 5
    assert demo.data_dir == "data/synthetic" and demo.test_split == "test"
    assert demo.pretrained == "work_dir/actclr_demo"
    for config in (aimclr, actclr, demo):
        # --pretrained names the output of a pretraining run.
        dataclasses.replace(config, pretrained="", random_init=True).validate()

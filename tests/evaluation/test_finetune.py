"""Fine-tuning and semi-supervised runs on a small synthetic dataset."""

import collections
import functools
import json
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.evaluation import finetune
from kskel.evaluation.finetune import FinetuneConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from data_prep import synthetic

    out = tmp_path_factory.mktemp("finetune") / "data"
    synthetic.generate_dataset(str(out), 200, seed=0)
    return str(out)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data):
    """A pretraining-like model_dir (query network + config) and its file."""
    import keras

    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder

    keras.utils.set_random_seed(0)
    network = SkeletonClassifier(STGCNEncoder(base_width=4, hidden_dim=16), 8)
    network.build((None, 2, 50, 25, 3))
    run = tmp_path_factory.mktemp("pretrain")
    network.save(run / "query_network.keras")
    (run / "config.json").write_text(
        json.dumps({"method": "actclr", "data_dir": data})
    )
    return str(run), str(run / "query_network.keras")


def _config(data, out, pretrained, **overrides):
    settings = dict(
        pretrained=pretrained,
        data_dir=data,
        model_dir=str(out),
        batch_size=8,
        epochs=2,
        lr_milestones=(1,),
        steps_per_epoch=3,
        eval_every=1,
    )
    settings.update(overrides)
    return FinetuneConfig(**settings)


def _load(path):
    from kskel.inference import load_model

    return load_model(path)


def _weights(model):
    return {w.path.split("/", 1)[-1]: w.numpy() for w in model.weights}


@pytest.fixture(scope="module")
def before(pretrained):
    """Encoder weights (BN statistics included) before fine-tuning."""
    return _weights(_load(pretrained[1]).encoder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data, pretrained):
    """A train-mode fine-tuning run from the pretraining model_dir."""
    out = tmp_path_factory.mktemp("trained")
    results = finetune.run_finetune(_config(data, out, pretrained[0]))
    return out, results, _load(out / "classifier.keras")


@pytest.fixture(scope="module")
def semi_frozen(tmp_path_factory, data, pretrained):
    """A frozen-BN semi-supervised run (p = 0.5) from the .keras file."""
    out = tmp_path_factory.mktemp("semi")
    config = _config(
        data,
        out,
        pretrained[1],
        bn_mode="frozen",
        label_fraction=0.5,
        epochs=1,
        steps_per_epoch=2,
        eval_every=0,
        subset_seed=4,
    )
    results = finetune.run_finetune(config)
    return out, results, _load(out / "classifier.keras")


def _is_moving(name):
    return "moving_mean" in name or "moving_variance" in name


def test_train_mode_changes_every_encoder_weight(trained, before):
    after = _weights(trained[2].encoder)
    assert after.keys() == before.keys()
    assert any(_is_moving(name) for name in before)
    unchanged = [n for n in before if np.array_equal(before[n], after[n])]
    assert unchanged == []  # Trainable weights and BN statistics alike.


def test_frozen_mode_keeps_bn_statistics_and_trains_the_rest(
    semi_frozen, before
):
    after = _weights(semi_frozen[2].encoder)
    assert after.keys() == before.keys()
    for name, value in before.items():
        if _is_moving(name):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
        else:
            assert not np.array_equal(after[name], value), name
    assert semi_frozen[1]["bn_mode"] == "frozen"


def test_outputs_are_consistent(trained, data):
    from kskel.evaluation.knn import topk_accuracy
    from kskel.evaluation.semi import split_labels

    out, results, _ = trained
    logits = np.load(out / "test_logits.npy")
    labels = np.load(out / "test_labels.npy")
    expected_labels, _ = split_labels(data, "test")
    np.testing.assert_array_equal(labels, expected_labels)
    assert logits.shape == (len(labels), 16) and logits.dtype == np.float32
    assert labels.dtype == np.int32
    written = json.loads((out / "results.json").read_text())
    assert written["protocol"] == "finetune"
    assert written["method"] == "actclr"
    assert written["num_samples"] == len(labels)
    assert written["top1"] == topk_accuracy(logits, labels, 1)
    assert written["top5"] == topk_accuracy(logits, labels, 5)
    assert [h["epoch"] for h in written["history"]] == [1, 2]
    assert written["best_top1"] == max(h["top1"] for h in written["history"])
    assert written["history"][-1]["top1"] == written["top1"]
    assert written["steps_per_epoch"] == 3
    assert written["flags"]["bn_mode"] == "train"
    assert written == json.loads(json.dumps(results))
    assert (out / "results.md").exists()


def test_classifier_reproduces_test_logits(trained, data):
    from kskel.data import pipeline
    from kskel.data.streams import to_stream

    out, _, model = trained
    dataset = pipeline.make_dataset(
        data,
        "test",
        16,
        training=False,
        stream_fn=functools.partial(to_stream, stream="joint"),
    )
    logits = np.concatenate([model(x, training=False) for x, _ in dataset])
    np.testing.assert_allclose(
        logits, np.load(out / "test_logits.npy"), rtol=1e-4, atol=1e-4
    )


def test_classifier_file_loads_without_the_training_code(trained):
    with zipfile.ZipFile(trained[0] / "classifier.keras") as archive:
        config = archive.read("config.json").decode()
    assert "TorchSGD" not in config and "EpochStepDecay" not in config
    assert "SkeletonClassifier" in config


def test_semi_run_trains_on_the_class_balanced_subset(semi_frozen, data):
    from kskel.evaluation.semi import split_labels

    _, results, _ = semi_frozen
    labels, names = split_labels(data, "train")
    counts = collections.Counter(labels.tolist())
    expected = sum(max(1, round(0.5 * n)) for n in counts.values())
    subset = results["subset"]
    assert results["protocol"] == "semi_50%"
    assert results["method"] == "unknown"  # A .keras file has no config.
    assert subset["num_samples"] == expected == results["train_samples"]
    assert subset["fraction"] == 0.5 and subset["seed"] == 4
    assert len(set(subset["names"])) == expected
    assert set(subset["names"]) <= set(names)
    chosen = collections.Counter(
        labels[names.index(name)] for name in subset["names"]
    )
    assert chosen == {c: max(1, round(0.5 * n)) for c, n in counts.items()}
    assert results["steps_per_epoch"] == 2  # min(expected // 8, 2)


def test_protocol_names(data, tmp_path):
    from data_prep import synthetic

    def name(other="", **kw):
        config = _config(data, tmp_path, "p", **kw)
        return finetune.protocol_name(config, other)

    assert name() == "finetune"
    assert name(data) == "finetune"
    assert name(label_fraction=0.01) == "semi_1%"
    assert name(data, label_fraction=0.1) == "semi_10%"
    assert name(protocol="transfer") == "transfer"
    # A pretraining dataset with other classes or sizes: transfer.
    other = str(tmp_path / "other")
    synthetic.generate_dataset(other, 30, seed=1)
    assert name(other) == "transfer"
    assert name(other, protocol="finetune") == "finetune"
    # The pretraining dataset is gone: its directory name decides.
    assert name(str(tmp_path / "elsewhere" / "data")) == "finetune"
    assert name(str(tmp_path / "pku1_xsub")) == "transfer"


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"bn_mode": "eval"}, "--bn_mode='eval'"),
        ({"label_fraction": 0.0}, "--label_fraction=0.0"),
        ({"protocol": "semi"}, "--protocol='semi'"),
        ({"protocol": "finetune", "label_fraction": 0.1}, "--protocol="),
        ({"pretrained": ""}, "--pretrained=''"),
        ({"eval_every": -1}, "--eval_every=-1"),
        ({"lr_milestones": (0,)}, "--lr_milestones"),
    ],
)
def test_bad_flags_name_the_flag(overrides, flag, tmp_path):
    settings = {"pretrained": "p", **overrides}
    config = _config("d", tmp_path, **settings)
    with pytest.raises(KskelError) as err:
        config.validate()
    assert str(err.value).startswith(flag)


def test_batch_larger_than_subset_fails_before_training(
    data, pretrained, tmp_path
):
    config = _config(
        data, tmp_path / "o", pretrained[1], label_fraction=0.05, batch_size=64
    )
    with pytest.raises(KskelError, match="--batch_size=64: the labelled"):
        finetune.run_finetune(config)
    assert not (tmp_path / "o").exists()


CONFIGS = sorted(
    p
    for p in (ROOT / "configs").glob("*.cfg")
    if p.stem.split("_")[0] in ("finetune", "semi", "transfer")
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_files_validate(path, monkeypatch):
    from kskel.flag_config import config_from_flagfile

    monkeypatch.chdir(ROOT)  # Nested --flagfile paths are repo-relative.
    config = config_from_flagfile(FinetuneConfig, path).validate()
    paper = {
        "learning_rate": 0.1,
        "nesterov": True,
        "weight_decay": 1e-4,
        "sgd_momentum": 0.9,
        "bn_mode": "train",
    }
    assert {k: getattr(config, k) for k in paper} == paper
    if "demo" not in path.stem:
        assert config.batch_size == 128 and config.epochs == 80
        assert config.lr_milestones == (10, 50)
    else:
        assert config.data_dir == "data/synthetic"
        assert config.pretrained == "work_dir/actclr_demo"


def test_config_set(monkeypatch):
    from kskel.flag_config import config_from_flagfile

    monkeypatch.chdir(ROOT)
    configs = {p.stem: config_from_flagfile(FinetuneConfig, p) for p in CONFIGS}
    assert set(configs) == {
        "finetune",
        "finetune_demo",
        "semi_1",
        "semi_10",
        "semi_demo",
        "transfer_pku",
    }
    assert configs["finetune"].label_fraction == 1.0
    assert configs["semi_1"].label_fraction == 0.01
    assert configs["semi_10"].label_fraction == 0.1
    assert configs["transfer_pku"].protocol == "transfer"
    assert configs["transfer_pku"].data_dir != configs["finetune"].data_dir


def test_cli_bad_flag_is_one_error_line(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.finetune",
            "--random_init",
            f"--data_dir={tmp_path / 'missing'}",
            f"--model_dir={out}",
            "--bn_mode=eval",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    errors = [
        ln for ln in result.stderr.splitlines() if ln.startswith("error:")
    ]
    assert errors == [
        "error: --bn_mode='eval': expected one of ('train', 'frozen')."
    ]
    assert "Traceback" not in result.stderr
    assert not out.exists()

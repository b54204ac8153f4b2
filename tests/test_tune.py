"""KerasTuner search over pretraining flags: space, trials, resume, outputs."""

import dataclasses
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from kskel import fileio
from kskel import pretraining
from kskel import tuning
from kskel.errors import KskelError
from kskel.flag_config import config_from_flagfile
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags
from kskel.pretraining import PretrainConfig
from kskel.tuning import TuneConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMPERATURE = "temperature:float:0.05:0.5:log"


class Crash(BaseException):
    """A kill: not an `Exception`, so KerasTuner does not catch it."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from data_prep import synthetic

    path = tmp_path_factory.mktemp("tune") / "synthetic"
    synthetic.generate_dataset(str(path), 240, seed=0, num_frames=16)
    return str(path)


def _base(data_dir, **overrides):
    config = PretrainConfig(
        data_dir=data_dir,
        model_dir="work_dir/tiny",
        epochs=1,
        batch_size=16,
        queue_size=64,
        steps_per_epoch=2,
        base_width=4,
        hidden_dim=16,
        feature_dim=8,
        dropout=0.0,
        head_batch_norm=True,
        key_init="copy",
        verbose=0,
    )
    return dataclasses.replace(config, **overrides)


def _tune(tmp_path, **overrides):
    config = TuneConfig(
        tune_dir=str(tmp_path / "tune"), search=TEMPERATURE, max_trials=2
    )
    return dataclasses.replace(config, **overrides)


def _rows(tune_dir):
    """The table rows of trials.md as lists of cells."""
    text = (pathlib.Path(tune_dir) / "trials.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]


# --- The search space ------------------------------------------------------


def test_parse_search_kinds_and_types():
    dims = tuning.parse_search(
        "temperature:float:0.05:0.5:log, tau_k:float:0.01:0.1,"
        "queue_size:int:64:256,key_init:choice:copy|independent,"
        "head_batch_norm:choice:true|False,tau_q:choice:0.1|0.2"
    )
    got = {d.name: (d.kind, d.values, d.log) for d in dims}
    assert got == {
        "temperature": ("float", (0.05, 0.5), True),
        "tau_k": ("float", (0.01, 0.1), False),
        "queue_size": ("int", (64, 256), False),
        "key_init": ("choice", ("copy", "independent"), False),
        "head_batch_norm": ("choice", (True, False), False),
        "tau_q": ("choice", (0.1, 0.2), False),
    }
    assert type(got["queue_size"][1][0]) is int
    assert type(got["tau_q"][1][0]) is float


@pytest.mark.parametrize(
    "search, reason",
    [
        ("", "required"),
        ("tau:float:0.1:0.2", "'tau' is not a pretraining flag"),
        ("model_dir:choice:a|b", "--model_dir is set by the tuner"),
        ("lr_milestones:choice:1|2", "--lr_milestones is a list flag"),
        ("epochs:float:1:2", "--epochs is an int flag"),
        ("temperature:int:1:2", "--temperature is a float flag"),
        ("head_batch_norm:int:0:1", "--head_batch_norm is a bool flag"),
        ("temperature:float:0.5:0.1", "MIN 0.5 must be below MAX 0.1"),
        ("temperature:float:0:0.5:log", "a log range needs MIN > 0"),
        ("temperature:float:0.1:x", "'x' is not a float"),
        ("temperature:float:0.1:0.2:exp", "NAME:float:MIN:MAX"),
        ("temperature:grid:0.1:0.2", "kind 'grid'"),
        ("temperature", "kind ''"),
        ("key_init:choice:copy", "2 or more distinct values"),
        ("key_init:choice:copy|copy", "2 or more distinct values"),
        ("nesterov:choice:yes|no", "'yes' is not a bool"),
        ("tau_q:float:0.1:0.2,tau_q:choice:0.1|0.3", "tau_q given twice"),
    ],
)
def test_bad_search_names_the_flag(search, reason):
    with pytest.raises(KskelError, match="^--search: ") as error:
        tuning.parse_search(search)
    assert reason in str(error.value)


def test_check_search_validates_every_end_and_choice(tmp_path):
    base = _base(str(tmp_path))
    dims = tuning.parse_search("temperature:float:0:0.5,dropout:float:0:0.9")
    with pytest.raises(KskelError) as error:
        tuning.check_search(dims, base, "random")
    assert str(error.value).startswith("--search: temperature=0.0 is not")
    assert "--temperature=0.0: expected > 0." in str(error.value)
    dims = tuning.parse_search("stream:choice:joint|velocity")
    with pytest.raises(KskelError, match="stream='velocity'"):
        tuning.check_search(dims, base, "random")
    dims = tuning.parse_search("epochs:int:1:4")
    tuning.check_search(dims, base, "random")
    with pytest.raises(KskelError, match="--tuner=hyperband sets the epochs"):
        tuning.check_search(dims, base, "hyperband")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"tune_dir": ""}, "--tune_dir='': expected required."),
        ({"tuner": "grid"}, "--tuner='grid': expected one of"),
        ({"objective": "loss"}, "--objective='loss': expected one of"),
        ({"max_trials": 0}, "--max_trials=0: expected >= 1."),
        ({"knn_temperature": 0.0}, "--knn_temperature=0.0: expected > 0."),
        ({"hyperband_factor": 1}, "--hyperband_factor=1: expected >= 2."),
        ({"search": "x:float:0:1"}, "--search: 'x:float:0:1'"),
    ],
)
def test_bad_tune_flags(tmp_path, overrides, message):
    with pytest.raises(KskelError) as error:
        _tune(tmp_path, **overrides).validate()
    assert str(error.value).startswith(message)


def test_bayesian_needs_scikit_learn(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "_importable", lambda name: name != "sklearn")
    with pytest.raises(KskelError, match="needs sklearn .*--tuner=random"):
        _tune(tmp_path, tuner="bayesian").validate()
    monkeypatch.setattr(tuning, "_importable", lambda name: True)
    assert _tune(tmp_path, tuner="bayesian").validate().tuner == "bayesian"


def test_cli_bad_flag_is_one_line_without_tensorflow(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.tune",
            f"--tune_dir={tmp_path}",
            "--search=tau:float:0.1:0.2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 1
    # Nothing else on stderr: TensorFlow (which logs on import) not loaded.
    assert result.stderr.splitlines() == [
        f"error: --search: 'tau:float:0.1:0.2': 'tau' is not a pretraining "
        f"flag. Syntax: {tuning.SYNTAX}."
    ]


def _parse_tune_flagfile(path):
    values = flags.FlagValues()
    define_flags(PretrainConfig, values)
    define_flags(TuneConfig, values)
    values(["kskel.tune", f"--flagfile={path}"])
    return (
        config_from_flags(TuneConfig, values),
        config_from_flags(PretrainConfig, values),
    )


@pytest.mark.parametrize(
    "name, searched",
    [
        ("tune_demo", {"tau_q", "tau_k"}),
        ("tune_actclr_temperature", {"tau_q", "tau_k"}),
        ("tune_skeletonclr_temperature", {"temperature"}),
    ],
)
def test_configs_validate(name, searched, monkeypatch):
    monkeypatch.chdir(ROOT)  # Nested --flagfile paths are repo-relative.
    tune, base = _parse_tune_flagfile(ROOT / "configs" / f"{name}.cfg")
    tune.validate()
    # init_from names the output of another run (the AimCLR run).
    base = dataclasses.replace(base, init_from="").validate()
    dims = tuning.parse_search(tune.search)
    tuning.check_search(dims, base, tune.tuner)
    assert {d.name for d in dims} == searched
    assert tune.tune_dir == f"work_dir/{name}"
    if name == "tune_demo":
        assert (base.method, tune.max_trials, base.epochs) == ("actclr", 2, 1)
        assert base.data_dir == "data/synthetic" and base.synthetic_samples


# --- The objective ----------------------------------------------------------


@pytest.mark.parametrize("objective", ["knn", "linear"])
def test_objective_on_known_features(objective, tmp_path, monkeypatch):
    # Features as a short run's: a large common offset, the class a small
    # deviation (+-1 around 1000). The bank (train split) holds two samples
    # of each class; of the four validation samples, the one at class 1's
    # place but labelled 0 is misclassified: top-1 3/4 for both objectives.
    # (On the raw features the linear head diverges: top-1 1/4.)
    from kskel.evaluation import features

    signal = [[1, -1], [1, -1], [-1, 1], [-1, 1]]
    splits = {"train": (signal, [0, 0, 1, 1]), "val": (signal, [0, 0, 0, 1])}
    calls = []

    def fake_extract(network, data_dir, split, **kwargs):
        calls.append((split, kwargs["projection"], kwargs["batch_size"]))
        x, y = splits[split]
        return 1000 + np.float32(x), np.int32(y)

    monkeypatch.setattr(features, "extract", fake_extract)
    tune = _tune(tmp_path, objective=objective, knn_k=2, eval_batch_size=7)
    config = _base("unused", train_split="train")
    metrics = tuning.validation_metrics(None, tune, config, num_classes=2)
    assert metrics == {f"val_{objective}_top1": 0.75}
    projection = objective == "knn"  # Linear reads encoder features.
    assert calls == [("train", projection, 7), ("val", projection, 7)]


# --- The search with a stand-in for pretraining ----------------------------


def _score(temperature, epochs):
    """The fake objective: best at temperature 0.2, better with epochs."""
    return 1.0 - math.log(temperature / 0.2) ** 2 + 0.01 * epochs


class FakePretraining:
    """Stands in for `run_pretraining`: epochs are counted in a file, and a
    run resumes from its own `model_dir` as the real one does."""

    def __init__(self, crash=None, fail=None):
        self.calls = []  # (trial, first epoch run, last epoch)
        self.crash = crash  # (trial, epoch): raise Crash before it.
        self.fail = fail  # trial whose run raises a KskelError.

    def __call__(self, config, callbacks=()):
        del callbacks
        trial = os.path.basename(config.model_dir)
        path = os.path.join(config.model_dir, "progress.json")
        done = 0
        if os.path.exists(path):
            done = json.loads(pathlib.Path(path).read_text())["epochs"]
        self.calls.append((trial, done, config.epochs))
        if trial == self.fail:
            raise KskelError("the loss became nan at epoch 1, step 2")
        os.makedirs(config.model_dir, exist_ok=True)
        scores = []
        for epoch in range(done + 1, config.epochs + 1):
            if (trial, epoch) == self.crash:
                self.crash = None
                raise Crash()
            scores.append(_score(config.temperature, epoch))
            pathlib.Path(path).write_text(json.dumps({"epochs": epoch}))
        return {"history": {"val_knn_top1": scores}, "epochs": config.epochs}


def _trial_values(tune_dir):
    """{trial id: temperature} from KerasTuner's trial records."""
    values = {}
    for path in (pathlib.Path(tune_dir) / "tuner").glob("trial_*/trial.json"):
        state = json.loads(path.read_text())
        values[state["trial_id"]] = state["hyperparameters"]["values"]
    return values


def test_interrupted_trial_resumes_from_its_checkpoint(
    data_dir, tmp_path, monkeypatch
):
    fake = FakePretraining(crash=("1", 2))
    monkeypatch.setattr(pretraining, "run_pretraining", fake)
    tune = _tune(tmp_path)
    base = _base(data_dir, epochs=2)
    with pytest.raises(Crash):
        tuning.run_tuning(tune, base)
    assert fake.calls == [("0", 0, 2), ("1", 0, 2)]
    assert [r[-2:] for r in _rows(tune.tune_dir)[1:]] == [["COMPLETED", "2"]]
    result = tuning.run_tuning(tune, base)
    # Trial 0 is not run again; trial 1 continues after its epoch 1.
    assert fake.calls == [("0", 0, 2), ("1", 0, 2), ("1", 1, 2)]
    temperatures = {
        k: v["temperature"] for k, v in _trial_values(tune.tune_dir).items()
    }
    best = max(temperatures, key=lambda k: _score(temperatures[k], 2))
    assert result["best_trial"] == best
    assert result["score"] == pytest.approx(_score(temperatures[best], 2))
    assert result["values"] == {"temperature": temperatures[best]}
    rows = _rows(tune.tune_dir)
    assert rows[0] == [
        "trial",
        "temperature",
        "val_knn_top1",
        "status",
        "epochs",
    ]
    assert [(r[0], r[3], r[4]) for r in rows[1:]] == [
        ("0", "COMPLETED", "2"),
        ("1", "COMPLETED", "2"),
    ]
    for row in rows[1:]:
        expected = _score(temperatures[row[0]], 2)
        assert float(row[2]) == pytest.approx(expected, abs=5e-5)
    # Finished: running it again trains nothing.
    tuning.run_tuning(tune, base)
    assert len(fake.calls) == 3


def test_same_seed_same_values(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(pretraining, "run_pretraining", FakePretraining())
    base = _base(data_dir)
    runs = [
        _tune(tmp_path / name, tuner_seed=seed, max_trials=3)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    for tune in runs:
        tuning.run_tuning(tune, base)
    a, b, c = (_trial_values(tune.tune_dir) for tune in runs)
    assert a == b
    assert a != c
    assert len({v["temperature"] for v in a.values()}) == 3


def test_resume_refuses_other_settings_but_extends(
    data_dir, tmp_path, monkeypatch
):
    fake = FakePretraining()
    monkeypatch.setattr(pretraining, "run_pretraining", fake)
    tune = _tune(tmp_path, max_trials=1)
    base = _base(data_dir)
    tuning.run_tuning(tune, base)
    with pytest.raises(KskelError) as error:
        tuning.run_tuning(
            dataclasses.replace(tune, search="temperature:float:0.1:0.3"),
            dataclasses.replace(base, learning_rate=0.5),
        )
    assert str(error.value) == (
        f"--tune_dir={tune.tune_dir} holds a search started with other "
        "--learning_rate, --search; use those flags to resume it, or a new "
        "--tune_dir."
    )
    result = tuning.run_tuning(dataclasses.replace(tune, max_trials=3), base)
    assert result["trials"] == 3
    assert [c[0] for c in fake.calls] == ["0", "1", "2"]


def test_failed_trial_is_recorded_and_search_goes_on(
    data_dir, tmp_path, monkeypatch
):
    fake = FakePretraining(fail="0")
    monkeypatch.setattr(pretraining, "run_pretraining", fake)
    tune = _tune(tmp_path)
    base = _base(data_dir)
    result = tuning.run_tuning(tune, base)
    assert result["best_trial"] == "1"
    rows = _rows(tune.tune_dir)
    assert rows[1][3] == "FAILED: the loss became nan at epoch 1, step 2"
    assert rows[1][2] == ""
    assert rows[2][3] == "COMPLETED"

    all_fail = _tune(tmp_path / "b", max_trials=1)
    with pytest.raises(KskelError) as error:
        tuning.run_tuning(all_fail, base)
    assert str(error.value).startswith(
        f"--tune_dir={all_fail.tune_dir}: no trial completed; trial 0: "
        "the loss became nan at epoch 1, step 2 (see "
    )
    assert not os.path.exists(os.path.join(all_fail.tune_dir, "best.cfg"))


def test_hyperband_promotion_continues_the_best_trial(
    data_dir, tmp_path, monkeypatch
):
    fake = FakePretraining()
    monkeypatch.setattr(pretraining, "run_pretraining", fake)
    # Hyperband with 3 epochs, factor 3: 3 trials of 1 epoch, then the
    # best of them promoted to 3 epochs (then a bracket of 3-epoch trials,
    # cut by --max_trials).
    tune = _tune(tmp_path, tuner="hyperband", max_trials=4)
    base = _base(data_dir, epochs=3)
    result = tuning.run_tuning(tune, base)
    values = _trial_values(tune.tune_dir)
    first = {k: values[k]["temperature"] for k in ("0", "1", "2")}
    best_first = max(first, key=lambda k: _score(first[k], 1))
    assert values["3"]["tuner/trial_id"] == best_first
    assert values["3"]["temperature"] == first[best_first]
    # The promoted trial starts from a copy of the first one's checkpoint.
    assert fake.calls == [("0", 0, 1), ("1", 0, 1), ("2", 0, 1), ("3", 1, 3)]
    assert result["best_trial"] == "3"
    rows = _rows(tune.tune_dir)
    assert [r[4] for r in rows[1:]] == [
        "1",
        "1",
        "1",
        f"3 (from trial {best_first})",
    ]
    best = config_from_flagfile(
        PretrainConfig, os.path.join(tune.tune_dir, "best.cfg")
    )
    assert best.epochs == 3  # The base's, not the trial's.
    assert best.temperature == first[best_first]


# --- A real search ---------------------------------------------------------


def test_real_search_resumes_and_writes_best_flagfile(
    data_dir, tmp_path, monkeypatch
):
    from kskel.evaluation.knn_eval import KnnConfig
    from kskel.evaluation.knn_eval import run_knn

    calls = []
    real_run = pretraining.run_pretraining

    def recording(config, callbacks=()):
        calls.append(os.path.basename(config.model_dir))
        return real_run(config, callbacks=callbacks)

    real_save = fileio.save_keras_atomic

    def crash_once_in_trial_1(model, path):
        # Trial 1 dies after its last checkpoint, before its query network
        # is written: the resumed trial has no epoch left to train.
        if os.path.join("trials", "1") in path and calls.count("1") == 1:
            raise Crash()
        real_save(model, path)

    monkeypatch.setattr(pretraining, "run_pretraining", recording)
    monkeypatch.setattr(fileio, "save_keras_atomic", crash_once_in_trial_1)
    tune = _tune(tmp_path)
    base = _base(data_dir, model_dir=str(tmp_path / "final"))
    with pytest.raises(Crash):
        tuning.run_tuning(tune, base)
    result = tuning.run_tuning(tune, base)
    assert calls == ["0", "1", "1"]
    assert result["trials"] == 2

    # Each trial's score is the KNN protocol on its final query network,
    # whether the epoch callback (trial 0) or the resumed trial (trial 1)
    # computed it.
    scores = {r[0]: float(r[2]) for r in _rows(tune.tune_dir)[1:]}
    for trial in ("0", "1"):
        knn = run_knn(
            KnnConfig(
                pretrained=tuning.trial_run_dir(tune.tune_dir, trial),
                data_dir=data_dir,
                model_dir=str(tmp_path / f"knn{trial}"),
                test_split="val",
            )
        )
        assert scores[trial] == pytest.approx(knn["top1"], abs=5e-5)
    assert result["score"] == pytest.approx(max(scores.values()), abs=5e-5)

    # best.cfg is what kskel.pretrain parses: the base flags, the best
    # temperature (as the trial ran it) and a fresh model_dir.
    path = os.path.join(tune.tune_dir, "best.cfg")
    best = config_from_flagfile(PretrainConfig, path).validate()
    trial_config = pretraining.load_config(
        tuning.trial_run_dir(tune.tune_dir, result["best_trial"])
    )
    assert best.temperature == trial_config.temperature
    assert best == dataclasses.replace(
        base,
        temperature=trial_config.temperature,
        model_dir=str(tmp_path / "final_best"),
    )


def test_bayesian_search_runs_and_keeps_the_best(
    data_dir, tmp_path, monkeypatch
):
    pytest.importorskip("sklearn", reason="BayesianOptimization needs it")
    fake = FakePretraining()
    monkeypatch.setattr(pretraining, "run_pretraining", fake)
    tune = _tune(tmp_path, tuner="bayesian", max_trials=4)
    result = tuning.run_tuning(tune, _base(data_dir))
    temperatures = {
        k: v["temperature"] for k, v in _trial_values(tune.tune_dir).items()
    }
    assert len(fake.calls) == len(temperatures) == 4
    best = max(temperatures, key=lambda k: _score(temperatures[k], 1))
    assert result["best_trial"] == best
    assert result["values"] == {"temperature": temperatures[best]}

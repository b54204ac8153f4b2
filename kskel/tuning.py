"""Hyperparameter search over pretraining flags with KerasTuner.

A search pretrains one run per trial and scores it on a validation split.
Each trial takes the base `PretrainConfig`, sets the searched flags to the
trial's values, pretrains into `TUNE_DIR/trials/<trial id>` and, at the end
of every epoch, classifies the validation split with the query network in
eval mode (a callback passed to `run_pretraining`), adding the score to the
epoch's logs:

- `val_knn_top1` (`--objective=knn`): the KNN protocol of
  `kskel.evaluation.knn_eval` (projection features, L2-normalised, the
  training split as the bank, `--knn_k` = 20, `--knn_temperature` = 0.1);
- `val_linear_top1` (`--objective=linear`): a linear head trained on the
  encoder features of the training split
  (`kskel.evaluation.linear.fit_linear_head`, a short schedule), which
  are standardised first: a short run leaves the batch-norm statistics,
  hence the feature scale, far from converged, and a fixed learning rate
  diverges on raw features of some runs.

The trial's objective is the last epoch's score (KerasTuner maximises it).
A trial whose run raises a `KskelError` (a diverging loss, a combination of
values that does not validate) is recorded as failed; the search goes on.
KerasTuner's oracles pick the values: `random` (RandomSearch), `bayesian`
(BayesianOptimization; needs scikit-learn) or `hyperband` (trials of 1 to
`--epochs` epochs; a trial promoted to a later round continues the
checkpoints of the trial it comes from instead of starting again).

The search space (`--search`) names pretraining flags:

    temperature:float:0.05:0.5:log      a float range, log-uniform
    tau_k:float:0.02:0.1                a float range, uniform
    queue_size:int:1024:8192:log        an int range
    key_init:choice:copy|independent    a choice of values

joined by commas. `model_dir` and `resume` are set by the tuner, list flags
cannot be searched, and under Hyperband neither can `epochs`.

`TUNE_DIR` holds the search: `tune.json` (the flags it was started with),
`tuner/` (KerasTuner's oracle and trial records), `trials/<id>/` (each
trial's pretraining run), `trials.md` (a table of every trial) and
`best.cfg` (the base flags with the best trial's values and
`--model_dir=<--model_dir>_best`, ready for `python -m kskel.pretrain
--flagfile=TUNE_DIR/best.cfg`). Running the same
command again resumes: finished trials are kept, the trial that was
running when the process died continues from its last checkpoint.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import sys

from kskel import fileio
from kskel.errors import KskelError
from kskel.flag_config import to_flagfile
from kskel.pretraining import PretrainConfig

TUNERS = ("random", "bayesian", "hyperband")
# --objective -> the metric each epoch's logs get and the tuner maximises.
OBJECTIVES = {"knn": "val_knn_top1", "linear": "val_linear_top1"}
KINDS = ("float", "int", "choice")
SET_BY_TUNER = ("model_dir", "resume")
# Flags a resumed search may change: they do not change what a trial runs.
FREE_ON_RESUME = ("max_trials", "model_dir", "resume", "verbose")
SETTINGS_FILE = "tune.json"
TUNER_PROJECT = "tuner"
TRIALS_DIR = "trials"
TABLE_FILE = "trials.md"
BEST_FILE = "best.cfg"
SYNTAX = (
    "NAME:float:MIN:MAX[:log], NAME:int:MIN:MAX[:log] or "
    "NAME:choice:A|B|..., joined by commas"
)


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class TuneConfig:
    """Settings of a search; each field is a flag of `kskel.tune`.

    The pretraining flags of the trials are a separate `PretrainConfig`
    (the same flags as `kskel.pretrain`); no name is shared.
    """

    tune_dir: str = _field(
        "",
        "Search directory: tuner state, trials/<id> runs, trials.md and "
        "best.cfg. An existing one is resumed.",
    )
    search: str = _field(
        "",
        f"Search space over pretraining flags: {SYNTAX}. Example: "
        "tau_q:float:0.05:0.3:log,tau_k:float:0.02:0.1:log.",
    )
    tuner: str = _field(
        "random", "random, bayesian (needs scikit-learn) or hyperband."
    )
    max_trials: int = _field(
        10,
        "Trials to run; hyperband stops its schedule (set by --epochs and "
        "--hyperband_factor) after this many.",
    )
    objective: str = _field(
        "knn",
        "knn (val_knn_top1) or linear (val_linear_top1) on "
        "--validation_split, computed after every epoch.",
    )
    validation_split: str = _field(
        "val",
        "Split the objective classifies; the KNN bank and the linear "
        "head's training set are --train_split.",
    )
    knn_k: int = _field(20, "KNN objective: neighbours that vote.")
    knn_temperature: float = _field(
        0.1, "KNN objective: vote weight exp(similarity / t)."
    )
    linear_epochs: int = _field(
        30,
        "Linear objective: epochs of the head on the standardised "
        "features (SGD, momentum 0.9, batch 128).",
    )
    linear_learning_rate: float = _field(
        0.1, "Linear objective: learning rate of the head."
    )
    eval_batch_size: int = _field(
        256, "Samples per forward pass of the objective."
    )
    hyperband_factor: int = _field(
        3, "Hyperband: epochs grow and trials shrink by this factor."
    )
    tuner_seed: int = _field(0, "Seed of the tuner's choice of values.")

    def validate(self):
        """Raises `KskelError` naming the first bad flag; returns self.

        Needs no TensorFlow: the search space is checked against the
        pretraining flags' names and types only (`check_search` checks
        the values).
        """
        checks = [
            (bool(self.tune_dir), "tune_dir", "required"),
            (self.tuner in TUNERS, "tuner", f"one of {TUNERS}"),
            (self.max_trials >= 1, "max_trials", ">= 1"),
            (
                self.objective in OBJECTIVES,
                "objective",
                f"one of {tuple(OBJECTIVES)}",
            ),
            (bool(self.validation_split), "validation_split", "a split"),
            (self.knn_k >= 1, "knn_k", ">= 1"),
            (self.knn_temperature > 0, "knn_temperature", "> 0"),
            (self.linear_epochs >= 1, "linear_epochs", ">= 1"),
            (
                self.linear_learning_rate > 0,
                "linear_learning_rate",
                "> 0",
            ),
            (self.eval_batch_size >= 1, "eval_batch_size", ">= 1"),
            (self.hyperband_factor >= 2, "hyperband_factor", ">= 2"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise KskelError(
                    f"--{name}={getattr(self, name)!r}: expected {expected}."
                )
        parse_search(self.search)
        fileio.check_scheme(self.tune_dir, "tune_dir")
        if self.tuner == "bayesian":
            missing = [m for m in ("sklearn", "scipy") if not _importable(m)]
            if missing:
                raise KskelError(
                    "--tuner=bayesian: KerasTuner's BayesianOptimization "
                    f"needs {' and '.join(missing)} (pip install "
                    "scikit-learn scipy); or use --tuner=random or "
                    "--tuner=hyperband."
                )
        return self


def _importable(module):
    return importlib.util.find_spec(module) is not None


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched pretraining flag.

    Attributes:
        name: the `PretrainConfig` field.
        kind: "float", "int" or "choice".
        values: `(min, max)` of a range, or the choices.
        log: bool, sample a range log-uniformly.
    """

    name: str
    kind: str
    values: tuple
    log: bool = False

    def declare(self, hp):
        """Adds this dimension to a `keras_tuner.HyperParameters`."""
        sampling = "log" if self.log else "linear"
        if self.kind == "float":
            hp.Float(self.name, *self.values, sampling=sampling)
        elif self.kind == "int":
            hp.Int(self.name, *self.values, sampling=sampling)
        else:
            hp.Choice(self.name, list(self.values))


def _pretrain_defaults():
    return {f.name: f.default for f in dataclasses.fields(PretrainConfig)}


def _type_name(default):
    names = {bool: "a bool", int: "an int", float: "a float"}
    return names.get(type(default), "a string")


def _convert(text, default, item):
    """`text` as the type of the flag whose default is `default`."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        return type(default)(text)
    except ValueError:
        raise _search_error(
            item, f"{text!r} is not {_type_name(default)}"
        ) from None


def _search_error(item, reason):
    return KskelError(f"--search: {item!r}: {reason}. Syntax: {SYNTAX}.")


def _parse_dimension(item, defaults):
    parts = item.split(":")
    name = parts[0]
    if name not in defaults:
        raise _search_error(item, f"{name!r} is not a pretraining flag")
    if name in SET_BY_TUNER:
        raise _search_error(item, f"--{name} is set by the tuner")
    default = defaults[name]
    if isinstance(default, tuple):
        raise _search_error(item, f"--{name} is a list flag")
    kind = parts[1] if len(parts) > 1 else ""
    if kind not in KINDS:
        raise _search_error(item, f"kind {kind!r} is not one of {KINDS}")
    if kind == "choice":
        if len(parts) != 3:
            raise _search_error(item, "a choice is NAME:choice:A|B|...")
        values = tuple(_convert(v, default, item) for v in parts[2].split("|"))
        if len(set(values)) != len(values) or len(values) < 2:
            raise _search_error(item, "expected 2 or more distinct values")
        return Dimension(name, kind, values)
    wanted = float if kind == "float" else int
    if isinstance(default, bool) or type(default) is not wanted:
        raise _search_error(item, f"--{name} is {_type_name(default)} flag")
    if len(parts) not in (4, 5) or parts[4:] not in ([], ["log"]):
        raise _search_error(item, f"a range is NAME:{kind}:MIN:MAX[:log]")
    low, high = (_convert(v, default, item) for v in parts[2:4])
    log = parts[4:] == ["log"]
    if not low < high:
        raise _search_error(item, f"MIN {low} must be below MAX {high}")
    if log and low <= 0:
        raise _search_error(item, "a log range needs MIN > 0")
    return Dimension(name, kind, (low, high), log)


def parse_search(text):
    """The `Dimension`s of a `--search` value.

    Raises:
        KskelError: naming `--search`: empty, bad syntax, an unknown or
            repeated flag, a kind that does not fit the flag's type, an
            empty or reversed range.
    """
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise KskelError(
            f"--search: required, at least one pretraining flag: {SYNTAX}."
        )
    defaults = _pretrain_defaults()
    dimensions = tuple(_parse_dimension(item, defaults) for item in items)
    names = [d.name for d in dimensions]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise KskelError(f"--search: {', '.join(repeated)} given twice.")
    return dimensions


def check_search(dimensions, base, tuner):
    """Checks that every end of every range is a valid pretraining setting.

    Raises:
        KskelError: naming `--search` and the failing flag.
    """
    for dimension in dimensions:
        if tuner == "hyperband" and dimension.name == "epochs":
            raise KskelError(
                "--search: --tuner=hyperband sets the epochs of each trial "
                "(up to --epochs); do not search epochs."
            )
        for value in dimension.values:  # Both ends, or every choice.
            try:
                dataclasses.replace(base, **{dimension.name: value}).validate()
            except KskelError as err:
                raise KskelError(
                    f"--search: {dimension.name}={value!r} is not a valid "
                    f"setting: {err}"
                ) from None


def trial_run_dir(tune_dir, trial_id):
    """The pretraining `--model_dir` of a trial."""
    return fileio.join(tune_dir, TRIALS_DIR, str(trial_id))


def searched_values(values):
    """The pretraining flags among a trial's hyperparameter values."""
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def trial_config(base, values, model_dir):
    """The `PretrainConfig` of a trial with hyperparameter `values`.

    Hyperband's `tuner/epochs` (the epochs the trial reaches) replaces
    `--epochs`; the run always resumes from its own checkpoints.
    """
    return dataclasses.replace(
        base,
        **searched_values(values),
        model_dir=model_dir,
        epochs=int(values.get("tuner/epochs", base.epochs)),
        resume=True,
    )


def validation_metrics(network, tune, config, num_classes):
    """`{objective metric: top-1}` of a query network on the validation split.

    Args:
        network: the query network (`SkeletonClassifier` with projection
            head), evaluated in eval mode.
        tune: `TuneConfig` (objective and its settings).
        config: the trial's `PretrainConfig` (data, stream, train split).
        num_classes: int.
    """
    from kskel.evaluation import features

    def extract(split, projection):
        return features.extract(
            network,
            config.data_dir,
            split,
            stream=config.stream,
            batch_size=tune.eval_batch_size,
            projection=projection,
        )

    if tune.objective == "knn":
        from kskel.evaluation.knn import knn_predict
        from kskel.evaluation.knn import topk_accuracy

        bank, bank_labels = extract(config.train_split, True)
        queries, labels = extract(tune.validation_split, True)
        scores = knn_predict(
            bank,
            bank_labels,
            queries,
            num_classes,
            k=tune.knn_k,
            temperature=tune.knn_temperature,
        )
        return {OBJECTIVES["knn"]: topk_accuracy(scores, labels, k=1)}
    from kskel.evaluation.linear import LinearEvalConfig
    from kskel.evaluation.linear import fit_linear_head

    linear = LinearEvalConfig(
        epochs=tune.linear_epochs,
        learning_rate=tune.linear_learning_rate,
        eval_interval=tune.linear_epochs,
        drop_last=False,
        seed=config.seed,
    )
    train, train_labels = extract(config.train_split, False)
    val, val_labels = extract(tune.validation_split, False)
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    _, _, history = fit_linear_head(
        linear,
        ((train - mean) / std, train_labels),
        ((val - mean) / std, val_labels),
        num_classes,
    )
    return {OBJECTIVES["linear"]: history[-1]["top1"]}


def objective_callback(evaluate):
    """A Keras callback adding `evaluate(model.query)` to each epoch's logs.

    Args:
        evaluate: callable, query network -> dict of float metrics.
    """
    import keras

    class ValidationObjective(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs.update(evaluate(self.model.query))

    return ValidationObjective()


def _copy_run(source, target):
    """Copies a run's config and checkpoints (Hyperband promotion).

    A local copy is renamed into place. Object stores cannot rename a
    directory, so a remote copy goes file by file with the checkpoint index
    last: an interrupted copy restores no checkpoint, and the promoted
    trial trains from the start instead of from a half-copied one.
    """
    if fileio.is_remote(target):
        fileio.copy_tree(
            source, target, ignore=("logs",), last=("checkpoints/checkpoint",)
        )
        return
    tmp = target + ".copying"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("logs"))
    os.replace(tmp, target)


def run_trial(tune, base, num_classes, trial):
    """Pretrains one trial; returns `{objective metric: last epoch's value}`.

    Raises:
        keras_tuner.errors.FailedTrialError: the run raised a `KskelError`
            (for example a diverging loss); the trial is recorded as
            failed and the search goes on.
    """
    import keras_tuner

    from kskel import pretraining
    from kskel.evaluation import pretrained

    values = trial.hyperparameters.values
    model_dir = trial_run_dir(tune.tune_dir, trial.trial_id)
    source = values.get("tuner/trial_id")
    if source is not None and not fileio.exists(model_dir):
        _copy_run(trial_run_dir(tune.tune_dir, source), model_dir)
    config = trial_config(base, values, model_dir)

    def evaluate(network):
        return validation_metrics(network, tune, config, num_classes)

    name = OBJECTIVES[tune.objective]
    try:
        result = pretraining.run_pretraining(
            config, callbacks=[objective_callback(evaluate)]
        )
        scores = result["history"].get(name)
        if scores:
            return {name: scores[-1]}
        # No epoch left to train: the process died after the trial's last
        # checkpoint. Score the query network the run just saved.
        return evaluate(pretrained.load_network(model_dir))
    except KskelError as err:
        raise keras_tuner.errors.FailedTrialError(str(err)) from err


def _failure(trial):
    """The last line of a failed trial's traceback, without the class."""
    lines = [ln for ln in (trial.message or "").splitlines() if ln.strip()]
    return lines[-1].split(": ", 1)[-1] if lines else ""


def _sorted_trials(oracle):
    return sorted(oracle.trials.values(), key=lambda t: int(t.trial_id))


def best_trial(trials):
    """The completed trial with the highest score (first on ties), or None."""
    done = [t for t in trials if t.status == "COMPLETED"]
    return max(done, key=lambda t: t.score, default=None)


def _cell(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def trials_table(trials, dimensions, tune, base):
    """`trials.md`: a row per trial in id order, the best named above."""
    metric = OBJECTIVES[tune.objective]
    best = best_trial(trials)
    lines = [
        f"# kskel.tune: {tune.tuner} search over {base.method} pretraining",
        "",
        f"Objective: {metric} (max) on split `{tune.validation_split}`, "
        "the last epoch of each trial. Trial ids name the runs in "
        f"`{TRIALS_DIR}/`; KerasTuner's log counts from 1 (its Trial #1 is "
        "trial 0).",
        "",
    ]
    if best is not None:
        lines += [
            f"Best: trial {best.trial_id}, {metric} = {best.score:.4f}; "
            f"its flags are in {BEST_FILE}.",
            "",
        ]
    names = [d.name for d in dimensions]
    header = ["trial", *names, metric, "status", "epochs"]
    lines += [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for trial in trials:
        values = trial.hyperparameters.values
        status = trial.status
        if status == "FAILED" and _failure(trial):
            status = f"FAILED: {_failure(trial)}"
        epochs = str(values.get("tuner/epochs", base.epochs))
        if "tuner/trial_id" in values:
            epochs += f" (from trial {values['tuner/trial_id']})"
        score = trial.score if trial.status == "COMPLETED" else None
        row = [
            trial.trial_id,
            *(_cell(values.get(n, "")) for n in names),
            "" if score is None else f"{score:.4f}",
            _cell(status),
            epochs,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def best_config(base, trial):
    """The base flags with `trial`'s values and `--model_dir=<base>_best`."""
    return dataclasses.replace(
        base,
        **searched_values(trial.hyperparameters.values),
        model_dir=base.model_dir.rstrip("/") + "_best",
    )


def _write_text(path, text):
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "w") as file:
            file.write(text)


def write_reports(oracle, dimensions, tune, base):
    """Writes `trials.md` and, once a trial completed, `best.cfg`.

    Returns:
        `(trials, best)`: every trial in id order and the best one (None
        while none completed).
    """
    trials = _sorted_trials(oracle)
    _write_text(
        fileio.join(tune.tune_dir, TABLE_FILE),
        trials_table(trials, dimensions, tune, base),
    )
    best = best_trial(trials)
    if best is not None:
        path = fileio.join(tune.tune_dir, BEST_FILE)
        header = (
            f"# Best of {len(trials)} trials of python -m kskel.tune "
            f"--tune_dir={tune.tune_dir}: trial {best.trial_id}, "
            f"{OBJECTIVES[tune.objective]} = {best.score:.4f}.\n"
            f"# Train it: python -m kskel.pretrain --flagfile={path} "
            "[--epochs=N]\n"
        )
        if fileio.is_remote(path):
            header += "# (absl reads only local flag files; copy it first.)\n"
        _write_text(path, header + to_flagfile(best_config(base, best)))
    return trials, best


def _settings(tune, base):
    values = {**dataclasses.asdict(base), **dataclasses.asdict(tune)}
    for name in FREE_ON_RESUME:
        values.pop(name)
    return json.loads(json.dumps(values))  # Tuples as JSON lists.


def check_same_search(tune, base):
    """Records the search's flags in `tune.json`; refuses other ones.

    Raises:
        KskelError: `--tune_dir` holds a search started with other flags
            (other than `FREE_ON_RESUME`).
    """
    path = fileio.join(tune.tune_dir, SETTINGS_FILE)
    current = _settings(tune, base)
    if not fileio.exists(path):
        _write_text(path, json.dumps(current, indent=2, sort_keys=True))
        return
    with fileio.open_file(path) as file:
        saved = json.load(file)
    changed = sorted(
        k
        for k in saved.keys() | current.keys()
        if saved.get(k) != current.get(k)
    )
    if changed:
        raise KskelError(
            f"--tune_dir={tune.tune_dir} holds a search started with other "
            f"{', '.join('--' + k for k in changed)}; use those flags to "
            "resume it, or a new --tune_dir."
        )


def _make_oracle(tune, base, dimensions):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for dimension in dimensions:
        dimension.declare(hp)
    common = {
        "objective": keras_tuner.Objective(OBJECTIVES[tune.objective], "max"),
        "hyperparameters": hp,
        "seed": tune.tuner_seed + 1,  # KerasTuner reads 0 as "no seed".
        # Failed trials are recorded in trials.md; the search goes on.
        "max_consecutive_failed_trials": tune.max_trials + 1,
    }
    oracles = keras_tuner.oracles
    if tune.tuner == "random":
        return oracles.RandomSearchOracle(max_trials=tune.max_trials, **common)
    if tune.tuner == "bayesian":
        return oracles.BayesianOptimizationOracle(
            max_trials=tune.max_trials, **common
        )
    oracle = oracles.HyperbandOracle(
        max_epochs=base.epochs, factor=tune.hyperband_factor, **common
    )
    oracle.max_trials = tune.max_trials  # The oracle stops there.
    return oracle


def make_tuner(tune, base, dimensions, num_classes):
    """A `keras_tuner.Tuner` whose trials are pretraining runs.

    It reloads the state in `TUNE_DIR/tuner` when there is one and rewrites
    `trials.md` and `best.cfg` after every trial.
    """
    import keras_tuner

    class PretrainingTuner(keras_tuner.Tuner):
        def run_trial(self, trial):
            return run_trial(tune, base, num_classes, trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if trial.status == "FAILED":
                print(
                    f"trial {trial.trial_id} failed: {_failure(trial)} "
                    f"(traceback in {self.get_trial_dir(trial.trial_id)})",
                    file=sys.stderr,
                )
            write_reports(self.oracle, dimensions, tune, base)

    return PretrainingTuner(
        oracle=_make_oracle(tune, base, dimensions),
        directory=tune.tune_dir,
        project_name=TUNER_PROJECT,
        overwrite=False,
    )


def _check_remote_tuner(tune_dir):
    """KerasTuner writes through `tf.io.gfile` on TensorFlow only."""
    import keras

    if fileio.is_remote(tune_dir) and keras.config.backend() != "tensorflow":
        raise KskelError(
            f"--tune_dir={tune_dir}: KerasTuner writes remote paths only on "
            "the TensorFlow backend (KERAS_BACKEND=tensorflow); use a local "
            f"--tune_dir on the {keras.config.backend()} backend."
        )


def run_tuning(tune, base):
    """Runs or resumes a search; returns a summary of its best trial.

    Args:
        tune: `TuneConfig`.
        base: `PretrainConfig` every trial starts from.

    Returns:
        dict: `trials` (count), `best_trial` (id), `objective` (metric
        name), `score`, `values` (the best trial's searched flags),
        `table` and `best_flagfile` (paths).

    Raises:
        KskelError: bad flags, a dataset without the train or validation
            split, a `--tune_dir` of another search, or no completed trial.
    """
    from kskel import pretraining
    from kskel.evaluation import knn_eval

    tune.validate()
    base.validate()
    dimensions = parse_search(tune.search)
    check_search(dimensions, base, tune.tuner)
    manifest = pretraining.ensure_dataset(base)
    for flag, split in (
        ("train_split", base.train_split),
        ("validation_split", tune.validation_split),
    ):
        knn_eval.check_split(manifest, base.data_dir, split, flag)
    _check_remote_tuner(tune.tune_dir)
    fileio.makedirs(tune.tune_dir)
    check_same_search(tune, base)
    tuner = make_tuner(tune, base, dimensions, manifest["num_classes"])
    tuner.search()
    trials, best = write_reports(tuner.oracle, dimensions, tune, base)
    if best is None:
        failed = [t for t in trials if t.status == "FAILED"]
        reason = (
            f"; trial {failed[-1].trial_id}: {_failure(failed[-1])}"
            if failed
            else ""
        )
        raise KskelError(
            f"--tune_dir={tune.tune_dir}: no trial completed{reason} "
            f"(see {fileio.join(tune.tune_dir, TABLE_FILE)})."
        )
    return {
        "trials": len(trials),
        "best_trial": best.trial_id,
        "objective": OBJECTIVES[tune.objective],
        "score": float(best.score),
        "values": searched_values(best.hyperparameters.values),
        "table": fileio.join(tune.tune_dir, TABLE_FILE),
        "best_flagfile": fileio.join(tune.tune_dir, BEST_FILE),
    }

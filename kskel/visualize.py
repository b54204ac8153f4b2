"""Pictures of a pretraining run, and ActCLR's actionlet localisation score.

Usage:
    python -m kskel.visualize --pretrained=MODEL_DIR --data_dir=DIR \\
        --split=test --model_dir=OUT [--logits_from=EVAL_OUT] \\
        [--max_points=1000] [--num_samples=4] [--threshold=0.5] \\
        [--gradient_activation=relu] [--mask_smoothing=adjacency] \\
        [--mask_threshold=0.3]

`--pretrained` is the `--model_dir` of a `python -m kskel.pretrain` run
(its `config.json` and latest checkpoint). Written to `--model_dir`:

- `tsne.png`: t-SNE of the query encoder's pooled features of up to
  `--max_points` samples of `--split` (a random subset, `--seed`),
  coloured by class;
- `confusion.png` with `--logits_from`, a directory holding
  `test_logits.npy` and `test_labels.npy` (the linear_eval / finetune
  outputs);
- for an ActCLR run: `actionlet_<i>.png` for the first `--num_samples`
  samples (joints coloured by the time-averaged actionlet, beside the
  ground truth when the dataset has one), `average_motion.png` (the
  anchor) and, on a dataset with ground-truth actionlets (the synthetic
  one), `actionlet_scores.json` (`kskel.evaluation.localisation`);
- `logs/`: every PNG as a TensorBoard image summary.

The actionlet is computed as the run was trained (its `config.json`);
`--gradient_activation`, `--mask_smoothing` and `--mask_threshold`
compute it another way from the same key network, to compare the paper's
and the official forms on one run.

All files are written atomically; every flag is checked before any data is
read. Every directory may be remote (`gs://`, or `s3://` / `hdfs://` with
requirements-io.txt).
"""

import dataclasses
import json

import numpy as np
from absl import flags

from kskel import cli
from kskel import fileio
from kskel.errors import KskelError
from kskel.evaluation import knn_eval
from kskel.evaluation.knn_eval import check_split
from kskel.evaluation.knn_eval import raise_first_failure
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags
from kskel.pretraining import ACTCLR_GRADIENT_ACTIVATIONS
from kskel.pretraining import ACTCLR_MASK_SMOOTHINGS

LOGITS = knn_eval.TEST_LOGITS
LABELS = knn_eval.TEST_LABELS
SCORES = "actionlet_scores.json"
# Flags that compute the actionlet another way: each names the ActCLR
# attribute it replaces, and its default keeps the run's.
ACTIONLET_FLAGS = ("gradient_activation", "mask_smoothing", "mask_threshold")


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class VisualizeConfig:
    """The flags of `python -m kskel.visualize`."""

    pretrained: str = _field(
        "", "A pretraining --model_dir (config.json and checkpoints/)."
    )
    data_dir: str = _field("", "Dataset directory (with manifest.json).")
    split: str = _field("test", "Split to draw.")
    model_dir: str = _field(
        "", "Output: PNGs, actionlet_scores.json and logs/."
    )
    logits_from: str = _field(
        "",
        "Optional directory with test_logits.npy and test_labels.npy "
        "(linear_eval / finetune output): draws confusion.png.",
    )
    max_points: int = _field(
        1000, "t-SNE: at most this many samples (a random subset)."
    )
    perplexity: float = _field(
        30.0, "t-SNE perplexity (capped at (points - 1) / 3)."
    )
    num_samples: int = _field(4, "ActCLR: samples drawn as actionlet_<i>.png.")
    batch_size: int = _field(64, "Samples per forward pass.")
    threshold: float = _field(
        0.5, "ActCLR localisation: actionlet values >= threshold are on."
    )
    seed: int = _field(0, "Seed of the t-SNE subset and embedding.")
    gradient_activation: str = _field(
        "",
        "ActCLR actionlet: 'relu' (paper) or 'none' (official) instead of "
        "the run's --actclr_gradient_activation; empty keeps the run's.",
    )
    mask_smoothing: str = _field(
        "",
        "ActCLR actionlet: 'adjacency' (paper) or 'body_part' (official) "
        "instead of the run's --actclr_mask_smoothing; empty keeps the "
        "run's.",
    )
    mask_threshold: float = _field(
        -1.0,
        "ActCLR actionlet: a threshold in [0, 1] instead of the run's "
        "--actclr_mask_threshold (0: the official x1e8 scale); -1 keeps the "
        "run's.",
    )

    def validate(self):
        """Raises `KskelError` naming the first bad flag; returns self."""
        checks = [
            (bool(self.pretrained), "pretrained", "required"),
            (bool(self.data_dir), "data_dir", "required"),
            (bool(self.split), "split", "required"),
            (bool(self.model_dir), "model_dir", "required"),
            (self.max_points >= 4, "max_points", ">= 4"),
            (self.perplexity > 1, "perplexity", "> 1"),
            (self.num_samples >= 0, "num_samples", ">= 0"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (0 < self.threshold < 1, "threshold", "in (0, 1)"),
            (
                self.gradient_activation in ("",) + ACTCLR_GRADIENT_ACTIVATIONS,
                "gradient_activation",
                f"empty or one of {ACTCLR_GRADIENT_ACTIVATIONS}",
            ),
            (
                self.mask_smoothing in ("",) + ACTCLR_MASK_SMOOTHINGS,
                "mask_smoothing",
                f"empty or one of {ACTCLR_MASK_SMOOTHINGS}",
            ),
            (
                self.mask_threshold == -1 or 0 <= self.mask_threshold <= 1,
                "mask_threshold",
                "-1 (the run's) or in [0, 1]",
            ),
        ]
        raise_first_failure(self, checks)
        for name in ("pretrained", "data_dir", "model_dir", "logits_from"):
            fileio.check_scheme(getattr(self, name), name)
        _check_run_dir(self.pretrained)
        if self.logits_from:
            for name in (LOGITS, LABELS):
                if not fileio.isfile(fileio.join(self.logits_from, name)):
                    raise KskelError(
                        f"--logits_from={self.logits_from}: no {name} (the "
                        "--model_dir of a linear_eval or finetune run)."
                    )
        return self


def _check_run_dir(pretrained):
    where = f"--pretrained={pretrained}"
    if not fileio.exists(pretrained):
        raise KskelError(f"{where}: not found.")
    if not fileio.isdir(pretrained):
        raise KskelError(
            f"{where}: a file; pass the --model_dir of a pretraining run "
            "(with config.json and checkpoints/)."
        )
    for name in ("config.json", "checkpoints/checkpoint"):
        if not fileio.exists(fileio.join(pretrained, *name.split("/"))):
            raise KskelError(
                f"{where}: no {name}; not a kskel pretraining --model_dir "
                "(or the run has not finished an epoch)."
            )


def run_visualization(config):
    """Draws the pictures of `config`; returns `{"images", "scores"}`.

    `images` maps picture names to PNG paths, `scores` is the dict of
    `actionlet_scores.json` (None when not written).

    Raises:
        KskelError: bad flags, not a pretraining run, a dataset of another
            joint layout or sample shape, an unknown or empty split.
    """
    from keras import ops

    from kskel.data import schema
    from kskel.evaluation import plots
    from kskel.evaluation.features import check_compatible
    from kskel.evaluation.localisation import check_actclr
    from kskel.pretraining import restore_model

    config.validate()
    manifest = schema.load_manifest(config.data_dir)
    check_split(manifest, config.data_dir, config.split, "split")
    logits = _load_logits(config.logits_from, manifest)
    try:
        model, pretrain = restore_model(config.pretrained)
    except KskelError as err:
        raise KskelError(f"--pretrained={config.pretrained}: {err}") from None
    source = f"--data_dir={config.data_dir}"
    actclr = pretrain.method == "actclr"
    if actclr:  # Includes the layout and channel checks.
        check_actclr(model, manifest, source)
        _override_actionlet(model, config)
    else:
        check_compatible(model.query, manifest, source)
        _check_no_actionlet_flags(config, pretrain.method)
    out = config.model_dir
    fileio.makedirs(out)
    images = {"tsne": _draw_tsne(model, pretrain, manifest, config)}
    if logits is not None:
        images["confusion"] = plots.plot_confusion(
            *logits,
            manifest["class_names"],
            fileio.join(out, "confusion.png"),
        )
    scores = None
    if actclr:
        images.update(_draw_actionlets(model, manifest, config))
        images["average_motion"] = _draw_average_motion(model, manifest, config)
        if manifest["has_actionlet"]:
            scores = _write_scores(model, config)
    step = int(ops.convert_to_numpy(model.epoch))
    plots.log_images_to_tensorboard(fileio.join(out, "logs"), images, step)
    return {"images": images, "scores": scores}


def _given_actionlet_flags(config):
    """`{name: value}` of the `ACTIONLET_FLAGS` set away from the default."""
    defaults = {
        field.name: field.default for field in dataclasses.fields(config)
    }
    return {
        name: getattr(config, name)
        for name in ACTIONLET_FLAGS
        if getattr(config, name) != defaults[name]
    }


def _check_no_actionlet_flags(config, method):
    """Refuses actionlet flags for a run without an actionlet."""
    given = _given_actionlet_flags(config)
    if given:
        raise KskelError(
            f"--{next(iter(given))}: only an ActCLR run has an actionlet; "
            f"--pretrained={config.pretrained} is a {method} run."
        )


def _override_actionlet(model, config):
    """Computes the actionlet with the flags' forms where they are given."""
    for name, value in _given_actionlet_flags(config).items():
        setattr(model, name, value)


def _load_logits(logits_from, manifest):
    """`(logits, labels)` from `--logits_from`, or None without it."""
    if not logits_from:
        return None
    where = f"--logits_from={logits_from}"
    try:
        logits = fileio.load_array(fileio.join(logits_from, LOGITS))
        labels = fileio.load_array(fileio.join(logits_from, LABELS))
    except (ValueError, OSError) as err:
        raise KskelError(f"{where}: unreadable .npy ({err}).") from None
    classes = manifest["num_classes"]
    if logits.ndim != 2 or logits.shape[1] != classes:
        raise KskelError(
            f"{where}: {LOGITS} has shape {logits.shape}, expected (n, "
            f"{classes}) for the {classes} classes of the dataset."
        )
    if labels.shape != logits.shape[:1]:
        raise KskelError(
            f"{where}: {labels.shape} labels for {logits.shape[0]} logits."
        )
    if labels.size and not 0 <= labels.min() <= labels.max() < classes:
        raise KskelError(
            f"{where}: {LABELS} holds classes outside [0, {classes})."
        )
    return logits, labels.astype(np.int64)


def _draw_tsne(model, pretrain, manifest, config):
    from kskel.evaluation import plots
    from kskel.evaluation.features import extract
    from kskel.evaluation.tsne import tsne

    features, labels = extract(
        model.query,
        config.data_dir,
        config.split,
        stream=pretrain.stream,
        batch_size=config.batch_size,
    )
    if len(features) < 4:
        raise KskelError(
            f"--split={config.split}: t-SNE needs at least 4 samples, the "
            f"split has {len(features)}."
        )
    if len(features) > config.max_points:
        rng = np.random.default_rng(config.seed)
        keep = np.sort(
            rng.choice(len(features), config.max_points, replace=False)
        )
        features, labels = features[keep], labels[keep]
    perplexity = min(config.perplexity, (len(features) - 1) / 3.0)
    embedding = tsne(features, perplexity=perplexity, seed=config.seed)
    return plots.plot_tsne(
        embedding,
        labels,
        manifest["class_names"],
        fileio.join(config.model_dir, "tsne.png"),
        title=f"t-SNE of {pretrain.method} {pretrain.stream} features, "
        f"{len(features)} {config.split} samples "
        f"(perplexity {perplexity:.3g})",
    )


def most_displaced_frame(skeleton):
    """The frame of (M, T, V, C) farthest from the sequence's mean pose."""
    skeleton = np.asarray(skeleton, np.float64)
    deviation = skeleton - skeleton.mean(axis=1, keepdims=True)
    return int(np.argmax(np.sum(deviation**2, axis=(0, 2, 3))))


def _draw_actionlets(model, manifest, config):
    from kskel.evaluation import plots
    from kskel.evaluation.localisation import load_split_arrays
    from kskel.evaluation.localisation import predict_actionlets

    if config.num_samples == 0:
        return {}
    # One forward batch as in scoring, so a batch-mean anchor sees as
    # many samples; the first num_samples are drawn.
    limit = max(config.num_samples, config.batch_size)
    arrays = load_split_arrays(config.data_dir, config.split, limit)
    actionlet = predict_actionlets(
        model, arrays["skeleton"], manifest["layout"], config.batch_size
    )
    truth = arrays.get("actionlet")
    images = {}
    for i in range(min(config.num_samples, len(actionlet))):
        skeleton = arrays["skeleton"][i]
        name = f"actionlet_{i}"
        images[name] = plots.plot_actionlet(
            skeleton,
            actionlet[i].mean(axis=1),
            fileio.join(config.model_dir, f"{name}.png"),
            layout=manifest["layout"],
            frame=most_displaced_frame(skeleton),
            ground_truth=None if truth is None else truth[i].mean(axis=1),
            title=f"{arrays['name'][i]}: "
            f"{manifest['class_names'][arrays['label'][i]]}",
        )
    return images


def _draw_average_motion(model, manifest, config):
    """The anchor: `average_motion`, or the split's mean for batch means."""
    from kskel.evaluation import plots
    from kskel.pretraining import split_average_motion

    if model.anchor == "dataset_mean":
        motion = np.asarray(model.average_motion)
        what = "the model's anchor: mean training sequence"
    else:
        motion = split_average_motion(
            config.data_dir, config.split, model.stream, manifest["layout"]
        )
        what = f"mean of {config.split!r} (the model's anchor: batch mean)"
    return plots.plot_average_motion(
        motion,
        fileio.join(config.model_dir, "average_motion.png"),
        layout=manifest["layout"],
        title=f"{what}, {model.stream} stream",
    )


def _write_scores(model, config):
    from kskel.evaluation.localisation import actionlet_scores

    scores = actionlet_scores(
        model,
        config.data_dir,
        config.split,
        batch_size=config.batch_size,
        threshold=config.threshold,
    )
    scores["pretrained"] = config.pretrained
    path = fileio.join(config.model_dir, SCORES)
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "w") as file:
            json.dump(scores, file, indent=2, sort_keys=True)
    return scores


def _number(value):
    return "n/a" if value is None else f"{value:.3f}"


def main(argv):
    del argv
    config = config_from_flags(VisualizeConfig, flags.FLAGS).validate()
    result = run_visualization(config)
    for path in result["images"].values():
        print(f"wrote {path}")
    scores = result["scores"]
    if scores is not None:
        print(
            f"actionlet on {scores['num_samples']} {scores['split']} "
            f"samples: {_summary(scores)}; joint speed (no model): "
            f"{_summary(scores['speed_baseline'])}"
        )
    return 0


def _summary(scores):
    cell, joint = scores["cell"], scores["joint"]
    return (
        f"cell IoU {_number(cell['iou'])} AUC {_number(cell['auc'])}, joint "
        f"IoU {_number(joint['iou'])} AUC {_number(joint['auc'])}, mean "
        f"{scores['actionlet_mean']:.3f}"
    )


if __name__ == "__main__":
    # Flags are defined only when run as a program, so that tests and
    # other tools can import VisualizeConfig without clashing flag names.
    define_flags(VisualizeConfig)
    cli.run(main)

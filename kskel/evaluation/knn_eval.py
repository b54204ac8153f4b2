"""The KNN protocol: classify test samples by their training neighbours.

Reproduces the ActCLR repository's KNN monitor (`processor/knn_monitor.py`,
FACTS §7.5): features of the query network in eval mode, taken from the
128-d projection output and L2-normalised, the training split as the bank,
cosine similarity, the top-k neighbours vote with weights `exp(sim / t)`,
k in {10, 20, 40}, t = 0.1. One difference: the official monitor reads
both splits through its augmenting feeder (crop + shear); here samples are
read as they are, so the result is deterministic.

`run_knn(KnnConfig(...))` is what `python -m kskel.knn` calls. The module
also holds the steps every evaluation protocol shares: opening the
starting network against a dataset, naming the pretraining method, and
writing `test_logits.npy`, `test_labels.npy` and `results.json`.
"""

import dataclasses
import json

import numpy as np

from kskel import fileio
from kskel.errors import KskelError

STREAMS = ("joint", "motion", "bone")
FEATURE_SOURCES = ("auto", "projection", "encoder")
# The neighbour counts the official monitor reports.
REPORTED_K = (10, 20, 40)
TEST_LOGITS = "test_logits.npy"
TEST_LABELS = "test_labels.npy"


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class KnnConfig:
    """Every setting of a KNN evaluation; each field is a flag of the CLI.

    Defaults are the official monitor's (k = 20, t = 0.1, projection
    features when the network has a projection head).
    """

    pretrained: str = _field(
        "", "Pretraining --model_dir or a .keras SkeletonClassifier."
    )
    random_init: bool = _field(
        False, "Evaluate an untrained encoder (the baseline)."
    )
    data_dir: str = _field("", "Dataset directory (with manifest.json).")
    model_dir: str = _field("", "Output directory for results and logits.")
    stream: str = _field("joint", "Input stream: joint, motion or bone.")
    train_split: str = _field("train", "Split used as the neighbour bank.")
    test_split: str = _field("test", "Split that is classified.")
    features: str = _field(
        "auto",
        "auto (projection output if the network has a projection head, "
        "else pooled encoder features), projection or encoder.",
    )
    k: int = _field(20, "Neighbours that vote (top-1/top-5 and logits).")
    temperature: float = _field(0.1, "Vote weight exp(similarity / t).")
    batch_size: int = _field(256, "Samples per forward pass.")
    seed: int = _field(0, "Seed of the --random_init encoder.")
    base_width: int = _field(16, "ST-GCN base width (--random_init only).")
    hidden_dim: int = _field(
        256, "ST-GCN output channels (--random_init only)."
    )

    def validate(self):
        """Raises `KskelError` naming the first bad flag; returns self."""
        check_common(self)
        checks = [
            (
                self.features in FEATURE_SOURCES,
                "features",
                f"one of {FEATURE_SOURCES}",
            ),
            (self.k >= 1, "k", ">= 1"),
            (self.temperature > 0, "temperature", "> 0"),
        ]
        raise_first_failure(self, checks)
        return self


def raise_first_failure(config, checks):
    """Raises `KskelError` for the first `(ok, flag, expected)` not ok."""
    for ok, name, expected in checks:
        if not ok:
            raise KskelError(
                f"--{name}={getattr(config, name)!r}: expected {expected}."
            )


def check_common(config):
    """Checks the flags every evaluation config shares.

    `config` has `pretrained`, `random_init`, `data_dir`, `model_dir`,
    `stream`, `train_split`, `test_split`, `batch_size`, `base_width` and
    `hidden_dim`. A missing checkpoint is reported here, before any data
    is read.
    """
    from kskel.evaluation import pretrained

    checks = [
        (config.stream in STREAMS, "stream", f"one of {STREAMS}"),
        (bool(config.data_dir), "data_dir", "required"),
        (bool(config.model_dir), "model_dir", "required"),
        (bool(config.train_split), "train_split", "a split name"),
        (bool(config.test_split), "test_split", "a split name"),
        (config.batch_size >= 1, "batch_size", ">= 1"),
        (config.base_width >= 1, "base_width", ">= 1"),
        (config.hidden_dim >= 1, "hidden_dim", ">= 1"),
    ]
    raise_first_failure(config, checks)
    for name in ("data_dir", "model_dir", "pretrained"):
        fileio.check_scheme(getattr(config, name), name)
    if config.pretrained:
        pretrained.resolve(config.pretrained)
    elif not config.random_init:
        raise KskelError(
            "--pretrained: required (a pretraining --model_dir or a .keras "
            "file), or pass --random_init for the untrained baseline."
        )


def check_split(manifest, data_dir, split, flag):
    """Raises `KskelError` naming `--flag` unless `split` has samples."""
    splits = manifest["splits"]
    if split not in splits:
        raise KskelError(
            f"--{flag}={split}: {data_dir} has no such split; it has "
            f"{', '.join(sorted(splits)) or 'none'}."
        )
    if splits[split]["num_samples"] == 0:
        raise KskelError(
            f"--{flag}={split}: the split of {data_dir} has no samples; "
            "choose another split."
        )


def open_network(config, split_flags):
    """`(network, source, manifest)` for an evaluation `config`.

    Loads the dataset manifest, checks the splits named by `split_flags`
    (config field names), builds the starting network (`--pretrained` or
    `--random_init`, the latter with the dataset's layout and channels) and
    checks that it reads the dataset's samples.
    """
    from kskel.data import schema
    from kskel.evaluation import features
    from kskel.evaluation import pretrained

    manifest = schema.load_manifest(config.data_dir)
    for flag in split_flags:
        check_split(manifest, config.data_dir, getattr(config, flag), flag)
    encoder_config = {
        "layout": manifest["layout"],
        "in_channels": manifest["channels"],
        "base_width": config.base_width,
        "hidden_dim": config.hidden_dim,
    }
    network, source = pretrained.starting_network(
        config.pretrained, config.random_init, encoder_config, config.seed
    )
    where = (
        f"--pretrained={config.pretrained}"
        if config.pretrained
        else "--random_init"
    )
    features.check_compatible(
        network, manifest, f"{where} with --data_dir={config.data_dir}"
    )
    if config.random_init:
        pretrained.estimate_batch_norm_statistics(
            network, config.data_dir, config.train_split, config.stream
        )
    return network, source, manifest


def method_of(config):
    """The pretraining method behind `config.pretrained`, if recorded.

    "random_init" for the baseline; the `method` of the run's
    `config.json` when `--pretrained` is a pretraining `--model_dir` or a
    file inside one; "unknown" otherwise (e.g. a converted checkpoint).
    """
    if config.random_init:
        return "random_init"
    directory = config.pretrained
    if not fileio.isdir(directory):
        directory = fileio.parent(directory)
    path = fileio.join(directory, "config.json")
    if fileio.exists(path):
        with fileio.open_file(path) as file:
            return json.load(file).get("method", "unknown")
    return "unknown"


def base_results(protocol, config, source, logits, labels):
    """The `results.json` fields every protocol writes."""
    from kskel.evaluation.knn import topk_accuracy

    return {
        "protocol": protocol,
        "top1": topk_accuracy(logits, labels, k=1),
        "top5": topk_accuracy(logits, labels, k=5),
        "num_samples": int(len(labels)),
        "checkpoint": source,
        "method": method_of(config),
        "stream": config.stream,
        "dataset": config.data_dir,
        "split": config.test_split,
        # Through JSON, so the dict equals what results.json holds.
        "flags": json.loads(json.dumps(dataclasses.asdict(config))),
    }


def save_outputs(model_dir, logits, labels, results):
    """Writes the test logits and labels, then `results.json`, atomically.

    `results.json` comes last: when it exists, the run is complete.
    """
    from kskel.evaluation.results import write_results

    fileio.makedirs(model_dir)
    fileio.save_array_atomic(
        fileio.join(model_dir, TEST_LOGITS), np.asarray(logits, np.float32)
    )
    fileio.save_array_atomic(
        fileio.join(model_dir, TEST_LABELS), np.asarray(labels, np.int32)
    )
    write_results(model_dir, results)


def feature_source(network, requested):
    """Resolves `--features` for `network`: "projection" or "encoder"."""
    from kskel.layers.projection_head import ProjectionHead

    has_projection = isinstance(network.head, ProjectionHead)
    if requested == "auto":
        return "projection" if has_projection else "encoder"
    if requested == "projection" and not has_projection:
        raise KskelError(
            "--features=projection: the network has no projection head (a "
            "classifier or --random_init); use --features=encoder."
        )
    return requested


def knn_scores(bank, bank_labels, queries, labels, num_classes, k, t):
    """Weighted KNN on arrays: `(scores for k, {k': top-1})`.

    Args:
        bank: (N, D) training features (normalised inside).
        bank_labels: (N,) int labels.
        queries: (Q, D) test features.
        labels: (Q,) int test labels.
        num_classes: int.
        k: int, neighbours whose class scores are returned.
        t: float, temperature.

    Returns:
        `(scores (Q, num_classes) float32, top1)` where `top1` maps each
        of k and `REPORTED_K` (as strings) to the top-1 accuracy.
    """
    from kskel.evaluation.knn import knn_predict
    from kskel.evaluation.knn import topk_accuracy

    top1 = {}
    chosen = None
    for neighbours in sorted({k, *REPORTED_K}):
        scores = knn_predict(
            bank,
            bank_labels,
            queries,
            num_classes,
            k=neighbours,
            temperature=t,
        )
        top1[str(neighbours)] = topk_accuracy(scores, labels, k=1)
        if neighbours == k:
            chosen = scores
    return chosen.astype(np.float32), top1


def run_knn(config):
    """Runs the KNN protocol and writes its outputs; returns the results.

    Writes `MODEL_DIR/test_logits.npy` (the KNN class scores for k),
    `test_labels.npy` and `results.json` (protocol "knn"; `top1`/`top5`
    for k and `knn` = top-1 for k = 10, 20, 40).

    Raises:
        KskelError: bad flags, missing checkpoint, unknown or empty split,
            a checkpoint of another joint layout or channel count.
    """
    from kskel.evaluation import features

    config.validate()
    network, source, manifest = open_network(
        config, ("train_split", "test_split")
    )
    kind = feature_source(network, config.features)

    def extract(split):
        return features.extract(
            network,
            config.data_dir,
            split,
            stream=config.stream,
            batch_size=config.batch_size,
            projection=kind == "projection",
        )

    bank, bank_labels = extract(config.train_split)
    queries, labels = extract(config.test_split)
    scores, top1 = knn_scores(
        bank,
        bank_labels,
        queries,
        labels,
        manifest["num_classes"],
        config.k,
        config.temperature,
    )
    results = base_results("knn", config, source, scores, labels)
    results.update(
        {
            "knn": top1,
            "k": config.k,
            "temperature": config.temperature,
            "features": kind,
            "feature_dim": int(bank.shape[1]),
            "num_bank_samples": int(len(bank_labels)),
        }
    )
    save_outputs(config.model_dir, scores, labels, results)
    return results

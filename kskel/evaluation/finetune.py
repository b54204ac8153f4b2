"""Fine-tuning, semi-supervised and transfer evaluation (FACTS §8).

A pretrained encoder gets a new linear head (`Dense(num_classes)`,
N(0, 0.02) kernel, zero bias) and every weight is trained with PyTorch-style
SGD (coupled L2, optional Nesterov) and the per-epoch step decay, on
unaugmented inputs of the chosen stream. The ActCLR v2023 settings are lr
0.1, batch 128, 80 epochs, milestones 10 and 50, weight decay 1e-4,
Nesterov (`configs/finetune.cfg`).

Batch norm during training (`bn_mode`):

- "train": the ActCLR repository calls `model.train()`: batch statistics,
  moving averages updated, dropout on in blocks 1-9.
- "frozen": Levigty's `FT_Processor` calls `model.eval()` while training:
  the forward pass runs with `training=False` (moving statistics used and
  left unchanged, dropout off); batch-norm scales and offsets still learn.

With `label_fraction < 1` the training set is the class-balanced subset of
`kskel.evaluation.semi` (the semi-supervised protocol); `protocol` names
the result "finetune", "semi_<p>%" or "transfer" (a pretrained run whose
dataset differs from `data_dir`, e.g. NTU-60 pretraining, PKU-MMD
fine-tuning).
"""

import dataclasses
import json
import os

import keras
import numpy as np

from kskel import fileio
from kskel.errors import KskelError

BN_MODES = ("train", "frozen")
PROTOCOLS = ("auto", "finetune", "semi", "transfer")
STREAMS = ("joint", "motion", "bone")
CLASSIFIER_NAME = "classifier.keras"
LOGITS_NAME = "test_logits.npy"
LABELS_NAME = "test_labels.npy"


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run; each field is a CLI flag.

    Defaults are the ActCLR v2023 fine-tuning settings (FACTS §8).
    """

    pretrained: str = _field(
        "", "Pretraining --model_dir or .keras SkeletonClassifier file."
    )
    random_init: bool = _field(
        False, "Start from a randomly initialised encoder (baseline)."
    )
    data_dir: str = _field("", "Dataset directory (with manifest.json).")
    model_dir: str = _field("", "Output directory.")
    stream: str = _field("joint", "Input stream: joint, motion or bone.")
    train_split: str = _field("train", "Split to train on.")
    test_split: str = _field("test", "Split to evaluate on.")
    batch_size: int = _field(128, "Batch size (training and testing).")
    epochs: int = _field(80, "Number of epochs.")
    learning_rate: float = _field(0.1, "Base learning rate (SGD).")
    lr_milestones: tuple = _field(
        (10, 50), "Epochs after which the learning rate drops 10x."
    )
    sgd_momentum: float = _field(0.9, "SGD momentum.")
    nesterov: bool = _field(True, "Nesterov momentum.")
    weight_decay: float = _field(
        1e-4, "Coupled L2 (PyTorch SGD weight_decay) on every variable."
    )
    bn_mode: str = _field(
        "train",
        "'train' (ActCLR repo: model.train()) or 'frozen' (Levigty "
        "FT_Processor: model.eval() while training, dropout off).",
    )
    label_fraction: float = _field(
        1.0, "Fraction p of labelled training samples per class (semi)."
    )
    subset_seed: int = _field(0, "Seed of the labelled subset draw.")
    protocol: str = _field(
        "auto",
        "Result name: auto (transfer when the pretraining dataset differs, "
        "semi_<p>% when --label_fraction < 1, else finetune), finetune, "
        "semi or transfer.",
    )
    eval_every: int = _field(
        5, "Evaluate the test split every N epochs (0: only at the end)."
    )
    seed: int = _field(0, "Seed of the head init and the data order.")
    base_width: int = _field(16, "ST-GCN base width (--random_init only).")
    hidden_dim: int = _field(
        256, "ST-GCN output channels (--random_init only)."
    )
    steps_per_epoch: int = _field(
        0, "Limit steps per epoch (0: the whole training set)."
    )
    jit_compile: bool = _field(False, "Compile the train step with XLA.")

    def validate(self):
        """Raises `KskelError` naming the first bad flag; returns self."""
        checks = [
            (
                bool(self.pretrained) or self.random_init,
                "pretrained",
                "a pretraining --model_dir or .keras file (or --random_init)",
            ),
            (bool(self.data_dir), "data_dir", "required"),
            (bool(self.model_dir), "model_dir", "required"),
            (self.stream in STREAMS, "stream", f"one of {STREAMS}"),
            (bool(self.train_split), "train_split", "a split name"),
            (bool(self.test_split), "test_split", "a split name"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (
                all(int(m) >= 1 for m in self.lr_milestones),
                "lr_milestones",
                "epochs >= 1",
            ),
            (0 <= self.sgd_momentum < 1, "sgd_momentum", "in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.bn_mode in BN_MODES, "bn_mode", f"one of {BN_MODES}"),
            (0 < self.label_fraction <= 1, "label_fraction", "in (0, 1]"),
            (self.protocol in PROTOCOLS, "protocol", f"one of {PROTOCOLS}"),
            (
                self.protocol != "semi" or self.label_fraction < 1,
                "protocol",
                "'semi' only with --label_fraction < 1",
            ),
            (
                self.protocol != "finetune" or self.label_fraction == 1,
                "protocol",
                "'finetune' only with --label_fraction=1 (leave 'auto')",
            ),
            (self.eval_every >= 0, "eval_every", ">= 0"),
            (self.base_width >= 1, "base_width", ">= 1"),
            (self.hidden_dim >= 1, "hidden_dim", ">= 1"),
            (self.steps_per_epoch >= 0, "steps_per_epoch", ">= 0"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise KskelError(
                    f"--{name}={getattr(self, name)!r}: expected {expected}."
                )
        for name in ("data_dir", "model_dir", "pretrained"):
            fileio.check_scheme(getattr(self, name), name)
        return self


class InferenceModeTrainer(keras.Model):
    """Trains `network` with its forward pass in inference mode.

    PyTorch's `model.eval()` during training: batch norm normalises with
    its moving statistics (and leaves them unchanged) and dropout is off,
    while gradients still reach every trainable weight. Only used to fit;
    `network` is what gets saved.
    """

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        self.network = network

    def call(self, inputs, training=None):
        del training  # Always inference mode, as model.eval().
        return self.network(inputs, training=False)


class TestEvaluation(keras.callbacks.Callback):
    """Scores the test split every `every` epochs and after the last one.

    Keeps `history` (one dict per evaluation: epoch, top1, top5) and the
    latest test `logits`.
    """

    def __init__(self, dataset, labels, every, epochs):
        super().__init__()
        self.dataset = dataset
        self.labels = labels
        self.every = every
        self.epochs = epochs
        self.history = []
        self.logits = None

    def on_epoch_end(self, epoch, logs=None):
        from kskel.evaluation.knn import topk_accuracy

        done = epoch + 1
        if done != self.epochs and (not self.every or done % self.every):
            return
        logits = np.asarray(self.model.predict(self.dataset, verbose=0))
        if len(logits) != len(self.labels):
            raise KskelError(
                f"the test split yielded {len(logits)} samples, its labels "
                f"{len(self.labels)}; run python -m data_prep.validate."
            )
        top1 = topk_accuracy(logits, self.labels, 1)
        top5 = topk_accuracy(logits, self.labels, 5)
        self.history.append({"epoch": done, "top1": top1, "top5": top5})
        self.logits = logits.astype(np.float32)
        print(f"epoch {done}: test top-1 {top1:.4f}, top-5 {top5:.4f}")


def pretraining_settings(pretrained):
    """The `config.json` of a pretraining `--model_dir`, else `{}`."""
    path = fileio.join(pretrained, "config.json") if pretrained else ""
    if not path or not fileio.isfile(path):
        return {}
    try:
        with fileio.open_file(path) as file:
            settings = json.load(file)
    except ValueError as err:
        raise KskelError(f"{path}: not JSON ({err}).") from None
    return settings if isinstance(settings, dict) else {}


def _dataset_identity(data_dir):
    from kskel.data import schema

    manifest = schema.load_manifest(data_dir)
    sizes = {k: v["num_samples"] for k, v in manifest["splits"].items()}
    return manifest["class_names"], sizes


def same_dataset(dir_a, dir_b):
    """Whether two dataset directories hold the same dataset.

    Equal paths, or manifests with the same class names and split sizes.
    When one manifest cannot be read (a pretraining run from another
    machine), the directory names are compared.
    """
    if os.path.realpath(dir_a) == os.path.realpath(dir_b):
        return True
    try:
        return _dataset_identity(dir_a) == _dataset_identity(dir_b)
    except KskelError:
        base = os.path.basename
        return base(os.path.normpath(dir_a)) == base(os.path.normpath(dir_b))


def protocol_name(config, pretrained_data_dir=""):
    """The result's protocol: "finetune", "semi_<p>%" or "transfer".

    Args:
        config: `FinetuneConfig`.
        pretrained_data_dir: the pretraining run's `data_dir` ("" when
            unknown); with `protocol="auto"` a different dataset than
            `config.data_dir` means "transfer".
    """
    if config.protocol == "transfer":
        return "transfer"
    if config.protocol == "auto" and pretrained_data_dir:
        if not same_dataset(pretrained_data_dir, config.data_dir):
            return "transfer"
    if config.label_fraction < 1:
        return f"semi_{100 * config.label_fraction:g}%"
    return "finetune"


def build_classifier(encoder, num_classes, sample_shape):
    """`SkeletonClassifier(encoder, Dense(num_classes))`, built."""
    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import linear_head

    classifier = SkeletonClassifier(encoder, linear_head(num_classes))
    classifier.build((None, *sample_shape))
    return classifier


def portable(classifier, sample_shape):
    """The classifier's layers in an uncompiled model, safe to save.

    A compiled model's `.keras` file records its optimizer (`TorchSGD`),
    which `python -m kskel.predict` would then have to import to load it.
    """
    from kskel.encoders import SkeletonClassifier

    model = SkeletonClassifier(classifier.encoder, classifier.head)
    model.build((None, *sample_shape))
    return model


def training_data(config, stream_fn):
    """`(dataset, steps_per_epoch, train_samples, subset_info or None)`."""
    from kskel.data import pipeline
    from kskel.data import schema
    from kskel.evaluation import semi

    subset = None
    if config.label_fraction < 1:
        labels, names = semi.split_labels(config.data_dir, config.train_split)
        indices = semi.class_balanced_subset(
            labels, config.label_fraction, config.subset_seed
        )
        dataset = semi.subset_dataset(
            config.data_dir,
            config.train_split,
            indices,
            config.batch_size,
            seed=config.seed,
            stream_fn=stream_fn,
        )
        num_samples = len(indices)
        subset = {
            "fraction": config.label_fraction,
            "seed": config.subset_seed,
            "split": config.train_split,
            "num_samples": num_samples,
            "split_samples": len(labels),
            "names": [names[i] for i in indices],
        }
    else:
        dataset = pipeline.make_dataset(
            config.data_dir,
            config.train_split,
            config.batch_size,
            training=True,
            seed=config.seed,
            stream_fn=stream_fn,
        )
        splits = schema.load_manifest(config.data_dir)["splits"]
        num_samples = splits[config.train_split]["num_samples"]
        if num_samples < config.batch_size:
            raise KskelError(
                f"--batch_size={config.batch_size} is larger than the "
                f"{num_samples} samples of split {config.train_split!r}."
            )
    steps = num_samples // config.batch_size
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
        dataset = dataset.take(steps)
    return dataset, steps, num_samples, subset


def _compile(trainer, config, steps):
    from kskel.optimizers import TorchSGD
    from kskel.schedules import EpochStepDecay

    optimizer = TorchSGD(
        EpochStepDecay(config.learning_rate, steps, config.lr_milestones),
        momentum=config.sgd_momentum,
        nesterov=config.nesterov,
        l2=config.weight_decay,
    )
    trainer.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1")],
        jit_compile=config.jit_compile,
    )
    # Momentum buffers made inside the first step would make Keras trace
    # the train step twice.
    optimizer.build(trainer.trainable_variables)


def run_finetune(config):
    """Fine-tunes as configured and writes the outputs to `model_dir`.

    Writes `test_logits.npy` (float32 `(N, num_classes)`, test split in
    record order), `test_labels.npy` (int32), `classifier.keras` (the final
    `SkeletonClassifier`) and, last, `results.json` / `results.md`.

    Returns:
        dict, the results written to `results.json`.

    Raises:
        KskelError: bad configuration, checkpoint or data.
    """
    from kskel import fileio
    from kskel.data import pipeline
    from kskel.data import schema
    from kskel.data.streams import stream_fn
    from kskel.evaluation import knn_eval
    from kskel.evaluation import results as results_lib
    from kskel.evaluation import semi

    config.validate()
    # The same start as linear evaluation: split checks, the dataset's
    # layout for --random_init and its batch-norm statistics.
    network, source, manifest = knn_eval.open_network(
        config, ("train_split", "test_split")
    )
    settings = pretraining_settings(config.pretrained)
    # A random encoder transfers nothing, whatever --pretrained names.
    pretraining_data = "" if config.random_init else settings.get("data_dir")
    protocol = protocol_name(config, pretraining_data or "")
    input_fn = stream_fn(config.stream, manifest["layout"])
    # The test split is checked before training, not after it.
    test_labels, _ = semi.split_labels(config.data_dir, config.test_split)
    test = pipeline.make_dataset(
        config.data_dir,
        config.test_split,
        config.batch_size,
        training=False,
        stream_fn=input_fn,
    )
    train, steps, train_samples, subset = training_data(config, input_fn)

    keras.utils.set_random_seed(config.seed)
    classifier = build_classifier(
        network.encoder, manifest["num_classes"], schema.sample_shape(manifest)
    )
    trainer = classifier
    if config.bn_mode == "frozen":
        trainer = InferenceModeTrainer(classifier)
    _compile(trainer, config, steps)
    evaluation = TestEvaluation(
        test, test_labels, config.eval_every, config.epochs
    )
    trainer.fit(
        train,
        epochs=config.epochs,
        callbacks=[evaluation],
        shuffle=False,  # The dataset is shuffled already.
        verbose=2,
    )

    best = max(evaluation.history, key=lambda h: h["top1"])
    final = evaluation.history[-1]
    results = {
        "protocol": protocol,
        "top1": final["top1"],
        "top5": final["top5"],
        "best_top1": best["top1"],
        "best_epoch": best["epoch"],
        "num_samples": int(len(test_labels)),
        "checkpoint": source,
        "flags": dataclasses.asdict(config),
        "method": "random_init"
        if config.random_init
        else settings.get("method", "unknown"),
        "stream": config.stream,
        "dataset": config.data_dir,
        "split": config.test_split,
        "train_split": config.train_split,
        "train_samples": train_samples,
        "steps_per_epoch": steps,
        "bn_mode": config.bn_mode,
        "history": evaluation.history,
    }
    if subset is not None:
        results["subset"] = subset
    if pretraining_data:
        results["pretraining_dataset"] = pretraining_data
    out = config.model_dir
    fileio.makedirs(out)
    fileio.save_array_atomic(fileio.join(out, LOGITS_NAME), evaluation.logits)
    fileio.save_array_atomic(
        fileio.join(out, LABELS_NAME), test_labels.astype(np.int32)
    )
    fileio.save_keras_atomic(
        portable(classifier, schema.sample_shape(manifest)),
        fileio.join(out, CLASSIFIER_NAME),
    )
    results_lib.write_results(out, results)
    return results

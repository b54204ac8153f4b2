"""Linear evaluation: a linear classifier on the frozen encoder.

The official protocol (Levigty/AimCLR and the ActCLR repository's AimCLR,
`processor/linear_evaluation.py`, FACTS §8): load the query encoder,
freeze everything but `fc` (N(0, 0.02) weights, zero bias), keep the model
in eval mode (batch norm on running statistics, no dropout), feed the
samples without augmentation, train `fc` with PyTorch SGD (momentum 0.9,
coupled weight decay) and a per-epoch step decay, cross-entropy averaged
over the batch, test every 5 epochs and after the last one. The training
loader shuffles every epoch and drops the last incomplete batch
(`processor/processor.py`, `drop_last=True`).

With a frozen eval-mode encoder and no augmentation, the pooled features
of every sample are the same in every epoch, so training `fc` on features
extracted once is the same computation as the official loop, minus 100
passes through the encoder. That is what `run_linear_eval` does; it then
joins the encoder and the trained head into `classifier.keras`.

Official settings (the flag files in `configs/`):

- `linear_eval.cfg`: Levigty/AimCLR `config/*/linear_eval/*`: lr 3.0,
  batch 128, 100 epochs, step [80], weight decay 0, no Nesterov.
- `linear_eval_actclr.cfg`: ActCLR repository
  `AimCLR/config/ntu60/linear_eval/*` (the settings behind both reference
  checkpoints): lr 24, batch 1024, 100 epochs, step [80], weight decay 0.

`--epochs=0` with a classifier checkpoint (for example a converted
official linear-evaluation checkpoint) evaluates its own head instead.
"""

import dataclasses

import numpy as np

from kskel.errors import KskelError
from kskel.evaluation import knn_eval

CLASSIFIER = "classifier.keras"


def _field(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class LinearEvalConfig:
    """Every setting of a linear evaluation; each field is a CLI flag.

    Defaults are the Levigty/AimCLR linear-evaluation settings.
    """

    pretrained: str = _field(
        "", "Pretraining --model_dir or a .keras SkeletonClassifier."
    )
    random_init: bool = _field(
        False, "Start from an untrained encoder (the baseline)."
    )
    data_dir: str = _field("", "Dataset directory (with manifest.json).")
    model_dir: str = _field(
        "", "Output: results, test logits, classifier.keras."
    )
    stream: str = _field("joint", "Input stream: joint, motion or bone.")
    train_split: str = _field("train", "Split the linear head is trained on.")
    test_split: str = _field("test", "Split it is evaluated on.")
    epochs: int = _field(
        100,
        "Training epochs; 0 evaluates the head of a classifier "
        "--pretrained without training.",
    )
    batch_size: int = _field(128, "Training batch size.")
    learning_rate: float = _field(3.0, "Base learning rate (SGD).")
    lr_milestones: tuple = _field(
        (80,), "Epochs after which the learning rate drops 10x."
    )
    sgd_momentum: float = _field(0.9, "SGD momentum.")
    nesterov: bool = _field(False, "Nesterov momentum.")
    weight_decay: float = _field(
        0.0, "Coupled L2 (PyTorch SGD weight_decay) on the head."
    )
    drop_last: bool = _field(
        True, "Drop the last incomplete batch of an epoch (official)."
    )
    standardize_features: bool = _field(
        False,
        "Train the head on features standardised with the training "
        "split's per-dimension mean and standard deviation (a probe with a "
        "non-affine batch norm, as MAE's), folded into the saved head. Not "
        "official: raw-feature SGD partly measures feature scale.",
    )
    eval_interval: int = _field(
        5, "Evaluate on the test split every this many epochs (and last)."
    )
    steps_per_epoch: int = _field(
        0, "Limit steps per epoch (0: the whole split)."
    )
    eval_batch_size: int = _field(
        256, "Samples per forward pass when extracting features."
    )
    seed: int = _field(0, "Seed of the head init, batch order, random_init.")
    base_width: int = _field(16, "ST-GCN base width (--random_init only).")
    hidden_dim: int = _field(
        256, "ST-GCN output channels (--random_init only)."
    )

    def validate(self):
        """Raises `KskelError` naming the first bad flag; returns self."""
        knn_eval.check_common(self)
        checks = [
            (self.epochs >= 0, "epochs", ">= 0"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (0 <= self.sgd_momentum < 1, "sgd_momentum", "in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.eval_interval >= 1, "eval_interval", ">= 1"),
            (self.steps_per_epoch >= 0, "steps_per_epoch", ">= 0"),
            (self.eval_batch_size >= 1, "eval_batch_size", ">= 1"),
            (
                all(int(m) >= 1 for m in self.lr_milestones),
                "lr_milestones",
                "epochs >= 1",
            ),
        ]
        knn_eval.raise_first_failure(self, checks)
        if self.epochs == 0 and self.random_init:
            raise KskelError(
                "--epochs=0 evaluates the head of a classifier --pretrained; "
                "a --random_init network has no trained head. Use "
                "--epochs >= 1."
            )
        return self


def steps_per_epoch(config, num_samples):
    """Optimizer steps in one epoch over `num_samples` training samples."""
    if config.drop_last:
        steps = num_samples // config.batch_size
    else:
        steps = -(-num_samples // config.batch_size)
    if steps == 0:
        raise KskelError(
            f"--batch_size={config.batch_size} is larger than the "
            f"{num_samples} samples of --train_split={config.train_split} "
            "and --drop_last drops the only batch; lower --batch_size or "
            "pass --nodrop_last."
        )
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    return steps


def _evaluate(head, features, labels):
    from keras import ops

    from kskel.evaluation.knn import topk_accuracy

    logits = ops.convert_to_numpy(head(features, training=False))
    return (
        logits.astype(np.float32),
        topk_accuracy(logits, labels, k=1),
        topk_accuracy(logits, labels, k=5),
    )


def fit_linear_head(config, train, test, num_classes, head=None):
    """Trains a linear head on fixed features; the official loop.

    Args:
        config: `LinearEvalConfig` (epochs, batch size, optimizer, seed).
        train: `(features (N, D), labels (N,))` of the training split.
        test: `(features (Q, D), labels (Q,))` of the test split.
        num_classes: int.
        head: optional built `Dense(num_classes)` layer to start from;
            default a fresh `linear_head` (N(0, 0.02), zero bias) drawn
            with `config.seed`.

    Returns:
        `(head, test_logits (Q, num_classes) of the last epoch, history)`;
        `history` lists `{"epoch", "loss", "top1", "top5"}` for every
        evaluated epoch (every `eval_interval` epochs and the last one).
    """
    import keras

    from kskel.encoders import linear_head
    from kskel.optimizers import TorchSGD
    from kskel.schedules import EpochStepDecay

    train_x, train_y = train
    test_x, test_y = test
    steps = steps_per_epoch(config, len(train_y))
    if head is None:
        keras.utils.set_random_seed(config.seed)
        head = linear_head(num_classes)
    inputs = keras.Input((train_x.shape[1],))
    model = keras.Model(inputs, head(inputs))
    model.compile(
        optimizer=TorchSGD(
            EpochStepDecay(config.learning_rate, steps, config.lr_milestones),
            momentum=config.sgd_momentum,
            nesterov=config.nesterov,
            l2=config.weight_decay,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = []
    logits = None
    for epoch in range(1, config.epochs + 1):
        order = np.random.default_rng([config.seed, epoch]).permutation(
            len(train_y)
        )
        model.reset_metrics()  # The loss below is this epoch's mean.
        for step in range(steps):
            batch = order[step * config.batch_size :][: config.batch_size]
            loss = model.train_on_batch(train_x[batch], train_y[batch])
        if epoch % config.eval_interval == 0 or epoch == config.epochs:
            logits, top1, top5 = _evaluate(head, test_x, test_y)
            history.append(
                {
                    "epoch": epoch,
                    "loss": float(loss),
                    "top1": top1,
                    "top5": top5,
                }
            )
            print(
                f"epoch {epoch}: loss {float(loss):.4f}, test top-1 "
                f"{top1:.4f}, top-5 {top5:.4f}"
            )
    return head, logits, history


def feature_standardisation(features):
    """`(mean, scale)` per dimension of (N, D) training features.

    A dimension that never varies keeps scale 1 (its standardised value is
    0 either way).
    """
    features = np.asarray(features, np.float64)
    std = features.std(axis=0)
    return features.mean(axis=0), np.where(std > 0, std, 1.0)


def fold_standardisation(head, mean, scale):
    """Rewrites a Dense `head` trained on `(x - mean) / scale` to take x.

    `W' = W / scale`, `b' = b - (mean / scale) W`: the same logits on raw
    features, so the saved classifier needs no extra layer.
    """
    kernel, bias = (np.asarray(w, np.float64) for w in head.get_weights())
    head.set_weights(
        [
            (kernel / scale[:, None]).astype(np.float32),
            (bias - (mean / scale) @ kernel).astype(np.float32),
        ]
    )


def _own_head_logits(config, network, manifest):
    """Test logits of a classifier `--pretrained` through its own head."""
    from kskel.evaluation import features

    if not network.is_classifier:
        raise KskelError(
            f"--epochs=0: --pretrained={config.pretrained} has a projection "
            "head, not a classifier; train a linear head with --epochs >= 1."
        )
    if network.num_outputs != manifest["num_classes"]:
        raise KskelError(
            f"--pretrained={config.pretrained}: a classifier with "
            f"{network.num_outputs} classes, the dataset --data_dir="
            f"{config.data_dir} has {manifest['num_classes']}; use "
            "--epochs >= 1 to train a new linear head."
        )
    return features.extract(
        network,
        config.data_dir,
        config.test_split,
        stream=config.stream,
        batch_size=config.eval_batch_size,
        projection=True,  # The head's output: the logits.
    )


def _train_head(config, network, manifest):
    """`(head, test logits, test labels, history)` of a new linear head."""
    from kskel.evaluation import features

    steps_per_epoch(
        config, manifest["splits"][config.train_split]["num_samples"]
    )

    def extract(split):
        return features.extract(
            network,
            config.data_dir,
            split,
            stream=config.stream,
            batch_size=config.eval_batch_size,
        )

    train = extract(config.train_split)
    test = extract(config.test_split)
    if config.standardize_features:
        mean, scale = feature_standardisation(train[0])
        train, test = (
            (((x - mean) / scale).astype(np.float32), y)
            for x, y in (train, test)
        )
    head, logits, history = fit_linear_head(
        config, train, test, manifest["num_classes"]
    )
    if config.standardize_features:
        fold_standardisation(head, mean, scale)
    return head, logits, test[1], history


def run_linear_eval(config):
    """Runs linear evaluation and writes its outputs; returns the results.

    Writes `MODEL_DIR/test_logits.npy` (last epoch), `test_labels.npy`,
    `results.json` (protocol "linear": `top1`/`top5` of the last epoch,
    `best_top1`, `best_epoch`, `history`) and, after training,
    `classifier.keras` (the encoder with the trained head).

    Raises:
        KskelError: bad flags, missing checkpoint, unknown or empty split,
            a checkpoint of another joint layout or channel count, or
            `--epochs=0` with a network that is not a classifier for the
            dataset's classes.
    """
    from kskel import fileio
    from kskel.data import schema
    from kskel.encoders import SkeletonClassifier

    config.validate()
    split_flags = (
        ("train_split", "test_split") if config.epochs else ("test_split",)
    )
    network, source, manifest = knn_eval.open_network(config, split_flags)
    if config.epochs == 0:
        logits, labels = _own_head_logits(config, network, manifest)
        head, history = None, []
    else:
        head, logits, labels, history = _train_head(config, network, manifest)
    results = knn_eval.base_results("linear", config, source, logits, labels)
    best = None
    for entry in history:  # The official best keeps the later of ties.
        if best is None or entry["top1"] >= best["top1"]:
            best = entry
    results.update(
        {
            "head": "trained" if head is not None else "own",
            "epochs": config.epochs,
            "best_top1": best["top1"] if best else results["top1"],
            "best_epoch": best["epoch"] if best else 0,
            "history": history,
        }
    )
    classifier_path = fileio.join(config.model_dir, CLASSIFIER)
    if head is not None:
        classifier = SkeletonClassifier(network.encoder, head)
        classifier.build((None, *schema.sample_shape(manifest)))
        fileio.save_keras_atomic(classifier, classifier_path)
    else:
        # A classifier of an earlier run would not match these results.
        fileio.remove(classifier_path)
    knn_eval.save_outputs(config.model_dir, logits, labels, results)
    return results

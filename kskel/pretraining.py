"""Contrastive pretraining: config, model and data assembly, training loop.

`run_pretraining(PretrainConfig(...))` is what `python -m kskel.pretrain`
and the temperature tuner call. The loop trains one epoch per `fit` call so
that each epoch gets its own view recipe (ActCLR changes its augmentations
by epoch), saves a checkpoint after every epoch (model, optimizer, queue,
epoch; the last `keep_checkpoints` kept) and resumes from the latest one.
"""

import dataclasses
import json

import numpy as np

from kskel.errors import KskelError

METHODS = ("skeletonclr", "aimclr", "actclr")
STRATEGIES = ("default", "mirrored", "multiworker")
STREAMS = ("joint", "motion", "bone")
QUEUE_INITS = ("random", "keys")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# kskel.models.actionlet's choices (paper's first), here without Keras so
# that the CLIs check their flags before importing it.
ACTCLR_GRADIENT_ACTIVATIONS = ("relu", "none")
ACTCLR_MASK_SMOOTHINGS = ("adjacency", "body_part")


def _field(default, help_text, **kwargs):
    return dataclasses.field(
        default=default, metadata={"help": help_text, **kwargs}
    )


@dataclasses.dataclass
class PretrainConfig:
    """Every setting of a pretraining run; each field is a flag of the CLI.

    Defaults are the official NTU60 x-sub joint settings of SkeletonCLR.
    """

    method: str = _field("skeletonclr", "skeletonclr, aimclr or actclr.")
    data_dir: str = _field("", "Dataset directory (with manifest.json).")
    model_dir: str = _field("", "Output: checkpoints, logs, final encoder.")
    train_split: str = _field("train", "Split to pretrain on.")
    stream: str = _field("joint", "Input stream: joint, motion or bone.")
    epochs: int = _field(300, "Number of epochs.")
    batch_size: int = _field(128, "Global batch size.")
    learning_rate: float = _field(0.1, "Base learning rate (SGD).")
    lr_milestones: tuple = _field(
        (250,), "Epochs after which the learning rate drops 10x."
    )
    sgd_momentum: float = _field(0.9, "SGD momentum.")
    nesterov: bool = _field(False, "Nesterov momentum.")
    weight_decay: float = _field(
        1e-4, "Coupled L2 (PyTorch SGD weight_decay) on every variable."
    )
    queue_size: int = _field(32768, "MoCo queue length K.")
    moco_momentum: float = _field(0.999, "Key encoder EMA momentum m.")
    temperature: float = _field(0.07, "InfoNCE temperature.")
    feature_dim: int = _field(128, "Contrastive feature dimension.")
    base_width: int = _field(16, "ST-GCN base width.")
    hidden_dim: int = _field(256, "ST-GCN output channels.")
    dropout: float = _field(0.5, "Dropout in ST-GCN blocks 1-9.")
    head_batch_norm: bool = _field(
        False,
        "Batch norm in the projection head's hidden layer (not in the "
        "official code; keeps short runs from collapsing).",
    )
    key_init: str = _field(
        "independent",
        "Key encoder start: 'independent' (official) or 'copy'.",
    )
    mining_epoch: int = _field(150, "AimCLR: last epoch before NNM.")
    topk: int = _field(1, "AimCLR: neighbours mined per query.")
    aug_method: str = _field(
        "12345", "Extreme / aug view augmentation digits (FACTS §4)."
    )
    strong_aug_method: str = _field(
        "1234589", "ActCLR strong view augmentation digits."
    )
    actclr_schedule: bool = _field(
        True, "ActCLR: per-epoch augmentation schedule of the official code."
    )
    actclr_anchor: str = _field(
        "dataset_mean",
        "ActCLR static anchor: 'dataset_mean' (paper: the average motion "
        "of the training split) or 'batch_mean' (official code).",
    )
    actclr_mask_axis: str = _field(
        "feature",
        "ActCLR cosine axis: 'feature' (paper, a working actionlet) or "
        "'head_collapse' (official HEAD: the actionlet collapses to ~0).",
    )
    actclr_kc_mode: str = _field(
        "per_sample",
        "ActCLR mixed key: 'per_sample' or 'v2023_broadcast' (the 87.14 "
        "checkpoint's code; needs batch_size == feature_dim).",
    )
    actclr_ske_trans_mode: str = _field(
        "head", "ActCLR joint-stream Skeleton AdaIN: 'head' or 'v2023'."
    )
    actclr_topk: int = _field(8192, "ActCLR: mined queue entries.")
    actclr_mask_threshold: float = _field(
        0.3,
        "ActCLR actionlet: t in (0, 1] makes cells at >= t of each body's "
        "peak 1 and lower ones proportional (the paper thresholds, Eq. 5); "
        "0 scales the activation map by 1e8 and clips (official code: "
        "saturates).",
    )
    actclr_gradient_activation: str = _field(
        "relu",
        "ActCLR actionlet channel weights: 'relu' (paper Eq. 4: mean of the "
        "ReLU of the gradient) or 'none' (official code: mean gradient).",
    )
    actclr_mask_smoothing: str = _field(
        "adjacency",
        "ActCLR actionlet smoothing over joints: 'adjacency' (paper Eq. 5: "
        "mean over graph neighbours) or 'body_part' (official code: mean "
        "over the body part).",
    )
    tau_q: float = _field(0.1, "ActCLR query-side temperature.")
    tau_k: float = _field(0.04, "ActCLR key-side temperature.")
    safp_mix: float = _field(
        0.5, "ActCLR offline feature: (1 - s) GAP + s SAFP (paper: 1)."
    )
    actclr_query_similarity: str = _field(
        "cosine",
        "ActCLR query side of the similarity mining: 'cosine' (paper Eq. "
        "9) or 'squared' (official code: squared cosines).",
    )
    strategy: str = _field("default", "default, mirrored or multiworker.")
    sync_batch_norm: bool = _field(
        False, "Synchronise batch norm across replicas."
    )
    init_from: str = _field(
        "", "Initialise both encoders from a .keras query network."
    )
    queue_init: str = _field(
        "random",
        "Queue at the start of a run: 'random' unit vectors (official) or "
        "'keys', the key network's projections of training samples (eval "
        "mode, unaugmented), so that a short run or a phase started with "
        "--init_from does not first contrast against noise.",
    )
    resume: bool = _field(True, "Continue from the latest checkpoint.")
    keep_checkpoints: int = _field(3, "Checkpoints to keep.")
    seed: int = _field(0, "Seed of data order, augmentation and init.")
    steps_per_epoch: int = _field(
        0, "Limit steps per epoch (0: the whole split)."
    )
    jit_compile: bool = _field(False, "Compile the train step with XLA.")
    precision: str = _field(
        "float32",
        "Keras dtype policy: float32, mixed_float16 (with loss scaling) or "
        "mixed_bfloat16. The networks compute in half precision; weights, "
        "queue and loss stay float32. For GPUs, and CPUs with bfloat16 units "
        "(AVX-512 BF16, AMX: mixed_bfloat16 made the ActCLR step 1.3x faster, "
        "benchmarks/README.md); other CPUs gain nothing.",
    )
    verbose: int = _field(
        1, "Keras progress output: 0 silent, 1 progress bar, 2 one line."
    )
    synthetic_samples: int = _field(
        0,
        "If > 0 and --data_dir has no dataset, generate the synthetic "
        "dataset there with this many samples first.",
    )

    def validate(self):
        """Raises `KskelError` naming the first bad flag."""
        checks = [
            (self.method in METHODS, "method", f"one of {METHODS}"),
            (self.stream in STREAMS, "stream", f"one of {STREAMS}"),
            (self.strategy in STRATEGIES, "strategy", f"one of {STRATEGIES}"),
            (self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}"),
            (bool(self.data_dir), "data_dir", "required"),
            (bool(self.model_dir), "model_dir", "required"),
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.batch_size >= 2, "batch_size", ">= 2"),
            (self.learning_rate > 0, "learning_rate", "> 0"),
            (0 <= self.sgd_momentum < 1, "sgd_momentum", "in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.queue_size >= 1, "queue_size", ">= 1"),
            (0 <= self.moco_momentum <= 1, "moco_momentum", "in [0, 1]"),
            (self.temperature > 0, "temperature", "> 0"),
            (self.feature_dim >= 1, "feature_dim", ">= 1"),
            (self.base_width >= 1, "base_width", ">= 1"),
            (self.hidden_dim >= 1, "hidden_dim", ">= 1"),
            (0 <= self.dropout < 1, "dropout", "in [0, 1)"),
            (
                self.key_init in ("independent", "copy"),
                "key_init",
                "'independent' or 'copy'",
            ),
            (
                self.queue_init in QUEUE_INITS,
                "queue_init",
                f"one of {QUEUE_INITS}",
            ),
            (self.topk >= 1, "topk", ">= 1"),
            (self.actclr_topk >= 1, "actclr_topk", ">= 1"),
            (
                0 <= self.actclr_mask_threshold <= 1,
                "actclr_mask_threshold",
                "in [0, 1]",
            ),
            (self.tau_q > 0, "tau_q", "> 0"),
            (self.tau_k > 0, "tau_k", "> 0"),
            (0 <= self.safp_mix <= 1, "safp_mix", "in [0, 1]"),
            (
                self.actclr_anchor in ("dataset_mean", "batch_mean"),
                "actclr_anchor",
                "'dataset_mean' or 'batch_mean'",
            ),
            (
                self.actclr_mask_axis in ("feature", "head_collapse"),
                "actclr_mask_axis",
                "'feature' or 'head_collapse'",
            ),
            (
                self.actclr_kc_mode in ("per_sample", "v2023_broadcast"),
                "actclr_kc_mode",
                "'per_sample' or 'v2023_broadcast'",
            ),
            (
                self.actclr_ske_trans_mode in ("head", "v2023"),
                "actclr_ske_trans_mode",
                "'head' or 'v2023'",
            ),
            (
                self.actclr_query_similarity in ("cosine", "squared"),
                "actclr_query_similarity",
                "'cosine' or 'squared'",
            ),
            (
                self.actclr_gradient_activation in ACTCLR_GRADIENT_ACTIVATIONS,
                "actclr_gradient_activation",
                f"one of {ACTCLR_GRADIENT_ACTIVATIONS}",
            ),
            (
                self.actclr_mask_smoothing in ACTCLR_MASK_SMOOTHINGS,
                "actclr_mask_smoothing",
                f"one of {ACTCLR_MASK_SMOOTHINGS}",
            ),
            (self.keep_checkpoints >= 1, "keep_checkpoints", ">= 1"),
            (self.steps_per_epoch >= 0, "steps_per_epoch", ">= 0"),
            (self.verbose in (0, 1, 2), "verbose", "0, 1 or 2"),
            (self.synthetic_samples >= 0, "synthetic_samples", ">= 0"),
            (
                all(int(m) >= 1 for m in self.lr_milestones),
                "lr_milestones",
                "epochs >= 1",
            ),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise KskelError(
                    f"--{name}={getattr(self, name)!r}: expected {expected}."
                )
        if self.method != "actclr" and self.queue_size % self.batch_size:
            raise KskelError(
                f"--queue_size={self.queue_size} must be a multiple of "
                f"--batch_size={self.batch_size} (the official MoCo queue "
                "advances by whole batches)."
            )
        from kskel import fileio

        for name in ("data_dir", "model_dir", "init_from"):
            fileio.check_scheme(getattr(self, name), name)
        if self.init_from and not fileio.exists(self.init_from):
            raise KskelError(f"--init_from={self.init_from}: not found.")
        from kskel.data import views

        for name in ("aug_method", "strong_aug_method"):
            try:
                views.digit_mask(getattr(self, name))
            except KskelError as err:
                raise KskelError(f"--{name}: {err}") from None
        return self

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def build_model(config, view_shape):
    """The contrastive model of `config.method` for views of `view_shape`."""
    from kskel import models

    encoder_config = {
        "base_width": config.base_width,
        "hidden_dim": config.hidden_dim,
        "dropout": config.dropout,
        "sync_batch_norm": config.sync_batch_norm,
    }
    common = {
        "encoder_config": encoder_config,
        "feature_dim": config.feature_dim,
        "queue_size": config.queue_size,
        "momentum": config.moco_momentum,
        "temperature": config.temperature,
        "head_batch_norm": config.head_batch_norm,
        "key_init": config.key_init,
        "input_shape": tuple(view_shape),
        "seed": config.seed,
    }
    if config.method == "skeletonclr":
        return models.SkeletonCLR(**common)
    if config.method == "aimclr":
        return models.AimCLR(
            mining_epoch=config.mining_epoch, topk=config.topk, **common
        )
    return models.ActCLR(
        anchor=config.actclr_anchor,
        mask_axis=config.actclr_mask_axis,
        kc_mode=config.actclr_kc_mode,
        ske_trans_mode=config.actclr_ske_trans_mode,
        stream=config.stream,
        topk=min(config.actclr_topk, config.queue_size),
        tau_q=config.tau_q,
        tau_k=config.tau_k,
        safp_mix=config.safp_mix,
        query_similarity=config.actclr_query_similarity,
        mask_threshold=config.actclr_mask_threshold,
        gradient_activation=config.actclr_gradient_activation,
        mask_smoothing=config.actclr_mask_smoothing,
        **common,
    )


def _actionlet_batch(config, layout, count=4):
    """The first `count` training samples, whose actionlet is logged."""
    from kskel.data import pipeline
    from kskel.data.streams import stream_fn

    dataset = pipeline.make_dataset(
        config.data_dir,
        config.train_split,
        count,
        training=False,
        with_labels=False,
        stream_fn=stream_fn(config.stream, layout),
    )
    return next(iter(dataset)).numpy()


def split_average_motion(data_dir, split, stream, layout):
    """The mean sequence of a split in `stream` (ActCLR's static anchor)."""
    from kskel.data import pipeline
    from kskel.data.streams import stream_fn
    from kskel.models.actclr import average_motion

    dataset = pipeline.make_dataset(
        data_dir,
        split,
        256,
        training=False,
        with_labels=False,
        stream_fn=stream_fn(stream, layout),
    )
    return average_motion(batch.numpy() for batch in dataset)


def training_average_motion(config, layout):
    """ActCLR's paper anchor: the mean training sequence of the stream."""
    return split_average_motion(
        config.data_dir, config.train_split, config.stream, layout
    )


def views_for_epoch(config, epoch, layout):
    """The `views_fn` of `config.method` for a 1-based `epoch`."""
    from kskel.data import views

    if config.method == "skeletonclr":
        return views.get_views_fn("skeletonclr", config.stream, layout)
    if config.method == "aimclr":
        return views.get_views_fn(
            "aimclr", config.stream, layout, aug_method=config.aug_method
        )
    if config.actclr_schedule:
        rng = np.random.default_rng([config.seed, epoch])
        selection = views.actclr_epoch_schedule(epoch, rng)
        options = dataclasses.asdict(selection)
    else:
        options = {
            "aug_method": config.aug_method,
            "strong_aug_method": config.strong_aug_method,
        }
    return views.get_views_fn("actclr", config.stream, layout, **options)


def initial_queue_keys(config, key_network):
    """Keys for `--queue_init=keys`: projections of training samples.

    The key network in inference mode on the unaugmented training split,
    shuffled with the run's seed and cut to the queue size (a split smaller
    than the queue fills it by repetition in `MoCo.fill_queue`).
    """
    import numpy as np

    from kskel.evaluation import features

    keys, _ = features.extract(
        key_network,
        config.data_dir,
        config.train_split,
        stream=config.stream,
        batch_size=config.batch_size,
        projection=True,
    )
    order = np.random.default_rng(config.seed).permutation(len(keys))
    return keys[order[: config.queue_size]]


def ensure_dataset(config):
    """Generates the synthetic dataset when asked to and none is there."""
    from kskel import fileio
    from kskel.data import schema

    manifest_path = fileio.join(config.data_dir, schema.MANIFEST_NAME)
    if config.synthetic_samples and not fileio.exists(manifest_path):
        from data_prep import synthetic

        print(
            f"generating the synthetic dataset ({config.synthetic_samples} "
            f"samples) in {config.data_dir}"
        )
        synthetic.generate_dataset(
            config.data_dir, config.synthetic_samples, seed=config.seed
        )
    return schema.load_manifest(config.data_dir)


def _steps_per_epoch(config, manifest):
    entry = manifest["splits"].get(config.train_split)
    if entry is None:
        raise KskelError(
            f"--train_split={config.train_split}: the dataset has splits "
            f"{', '.join(sorted(manifest['splits']))}."
        )
    steps = entry["num_samples"] // config.batch_size
    if steps == 0:
        raise KskelError(
            f"--batch_size={config.batch_size} is larger than the "
            f"{entry['num_samples']} samples of split {config.train_split!r}."
        )
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
    return steps


def _check_resumable(config):
    """A model_dir holds one run: refuse to resume with other settings."""
    from kskel import fileio

    path = fileio.join(config.model_dir, "config.json")
    if not fileio.exists(path):
        return
    with fileio.open_file(path) as file:
        saved = json.load(file)
    fixed = [
        "method",
        "stream",
        "feature_dim",
        "head_batch_norm",
        "base_width",
        "hidden_dim",
        "queue_size",
    ]
    if config.method == "actclr":
        # Resuming with another anchor or actionlet would train one run
        # two ways and record only the second in config.json.
        fixed += list(ACTCLR_ACTIONLET_SETTINGS)
    current = dataclasses.asdict(config)
    changed = [
        k
        for k in fixed
        if saved.get(k, SETTINGS_BEFORE_THEIR_FLAG.get(k)) != current[k]
    ]
    # Loss scaling adds optimizer state that the checkpoint must match.
    if (saved.get("precision") == "mixed_float16") != (
        config.precision == "mixed_float16"
    ):
        changed.append("precision")
    if changed:
        raise KskelError(
            f"--model_dir={config.model_dir} holds a run with other "
            f"{', '.join('--' + k for k in changed)}; use a new --model_dir."
        )


def initialise_from(model, path):
    """Loads a `.keras` query network into both encoders (queue stays)."""
    import keras

    import kskel.encoders  # noqa: F401

    source = keras.models.load_model(path)
    if len(source.weights) != len(model.query.weights):
        raise KskelError(
            f"--init_from={path}: {len(source.weights)} weights, the query "
            f"network has {len(model.query.weights)}; architectures differ."
        )
    for network in (model.query, model.key):
        for target, value in zip(network.weights, source.weights):
            if tuple(target.shape) != tuple(value.shape):
                raise KskelError(
                    f"--init_from={path}: weight {value.path} has shape "
                    f"{tuple(value.shape)}, expected {tuple(target.shape)}."
                )
            # A copy per network: on JAX two variables must not share
            # one buffer (the jitted step donates each).
            target.assign(keras.ops.copy(value))


def scaled_for_precision(optimizer, precision):
    """`optimizer`, wrapped in loss scaling under `mixed_float16`.

    Small float16 gradients underflow without it; bfloat16 has float32's
    exponent range and needs none.
    """
    import keras

    if precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def run_pretraining(config, callbacks=()):
    """Pretrains as configured; returns `{"history": ..., "epochs": n}`.

    Args:
        config: `PretrainConfig`.
        callbacks: extra Keras callbacks for every epoch's `fit` (e.g. the
            tuner's validation objective). They run after the built-in
            ones and before TensorBoard, so metrics they add to the epoch
            `logs` reach the history, TensorBoard and the progress line;
            `self.model` is the whole contrastive model (`.query` is the
            query network).

    Raises:
        KskelError: bad configuration or data.
    """
    from kskel import distributed
    from kskel.strategy import make_strategy

    config.validate()
    # First: a multi-worker strategy must configure TensorFlow's runtime
    # before anything else starts it.
    strategy = make_strategy(config.strategy)
    # Workers other than the chief write into a temporary directory.
    with distributed.write_root(config.model_dir, strategy) as write_dir:
        return _pretrain(config, callbacks, strategy, write_dir)


def _shared_dataset(config, strategy):
    """`ensure_dataset`; the chief alone generates one all workers share."""
    from kskel import distributed

    if config.strategy != "multiworker":
        return ensure_dataset(config)
    if distributed.is_chief(strategy):
        ensure_dataset(config)
    distributed.barrier(strategy)
    return ensure_dataset(config)


def _pretrain(config, callbacks, strategy, write_dir):
    import keras
    import tensorflow as tf

    from kskel import distributed
    from kskel import fileio
    from kskel.checkpointing import make_checkpoint_manager
    from kskel.data import pipeline
    from kskel.data import schema
    from kskel.models.moco import EpochTracker
    from kskel.optimizers import TorchSGD
    from kskel.pretrain_callbacks import NaNGuard
    from kskel.pretrain_callbacks import PretrainMonitor
    from kskel.schedules import EpochStepDecay

    manifest = _shared_dataset(config, strategy)
    steps = _steps_per_epoch(config, manifest)
    view_shape = schema.sample_shape(manifest)
    layout = manifest["layout"]
    _check_resumable(config)
    if distributed.is_chief(strategy):
        fileio.makedirs(config.model_dir)
        with fileio.atomic_path(
            fileio.join(config.model_dir, "config.json")
        ) as tmp:
            with open(tmp, "w") as file:
                file.write(config.to_json())

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        # Layers take the global dtype policy when they are created. It is
        # restored at once, so nothing created later in this process
        # (another run, an evaluation model) inherits it.
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(config.precision)
        try:
            model = build_model(config, view_shape)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        schedule = EpochStepDecay(
            config.learning_rate, steps, config.lr_milestones
        )
        optimizer = TorchSGD(
            schedule,
            momentum=config.sgd_momentum,
            nesterov=config.nesterov,
            l2=config.weight_decay,
        )
        optimizer = scaled_for_precision(optimizer, config.precision)
        # On JAX the step is always jitted (eager JAX runs op by op).
        model.compile(
            optimizer=optimizer,
            jit_compile=config.jit_compile or keras.backend.backend() == "jax",
        )
        completed = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Every worker saves (saving may need all of them), into `write_dir`;
    # every worker resumes from the chief's checkpoints.
    checkpoint_dir = fileio.join(config.model_dir, "checkpoints")
    manager = make_checkpoint_manager(
        model,
        optimizer,
        checkpoint_dir,
        max_to_keep=config.keep_checkpoints,
        completed=completed,
        save_directory=fileio.join(write_dir, "checkpoints"),
    )
    latest = manager.latest_checkpoint
    if config.resume and latest:
        manager.restore(latest)
        print(f"resumed from {latest} (epoch {int(completed.numpy())})")
    else:
        if config.init_from:
            initialise_from(model, config.init_from)
        if config.method == "actclr" and config.actclr_anchor == "dataset_mean":
            model.set_average_motion(training_average_motion(config, layout))
        if config.queue_init == "keys":
            model.fill_queue(initial_queue_keys(config, model.key))

    logdir = fileio.join(write_dir, "logs")
    callbacks = [
        EpochTracker(),
        NaNGuard(checkpoint_dir),
        PretrainMonitor(
            fileio.join(logdir, "pretrain"),
            schedule,
            _actionlet_batch(config, layout)
            if config.method == "actclr"
            else None,
        ),
        *callbacks,  # The caller's, before TensorBoard logs their metrics.
        keras.callbacks.TensorBoard(logdir, update_freq="epoch"),
    ]
    history = {}
    for epoch in range(int(completed.numpy()), config.epochs):
        dataset = pipeline.make_dataset(
            config.data_dir,
            config.train_split,
            config.batch_size,
            training=True,
            seed=config.seed + epoch,
            views_fn=views_for_epoch(config, epoch + 1, layout),
        ).take(steps)
        if config.strategy == "multiworker":
            dataset = distributed.shard_by_data(dataset)
        result = model.fit(
            dataset,
            initial_epoch=epoch,
            epochs=epoch + 1,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        for name, values in result.history.items():
            history.setdefault(name, []).extend(float(v) for v in values)
        completed.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
    fileio.save_keras_atomic(
        model.query, fileio.join(write_dir, "query_network.keras")
    )
    return {"history": history, "epochs": int(completed.numpy())}


ACTCLR_ACTIONLET_SETTINGS = (
    "actclr_anchor",
    "actclr_mask_axis",
    "actclr_mask_threshold",
    "actclr_gradient_activation",
    "actclr_mask_smoothing",
)
SETTINGS_BEFORE_THEIR_FLAG = {
    "actclr_query_similarity": "squared",
    "actclr_mask_threshold": 0.0,
    "actclr_gradient_activation": "none",
    "actclr_mask_smoothing": "body_part",
}


def load_config(model_dir):
    """The `PretrainConfig` a run saved in `model_dir/config.json`."""
    from kskel import fileio

    path = fileio.join(model_dir, "config.json")
    if not fileio.exists(path):
        raise KskelError(
            f"{model_dir}: no config.json; not a kskel pretraining --model_dir."
        )
    with fileio.open_file(path) as file:
        saved = json.load(file)
    names = {field.name for field in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise KskelError(f"{path}: unknown settings {unknown}.")
    if "lr_milestones" in saved:
        saved["lr_milestones"] = tuple(saved["lr_milestones"])
    # A run saved before these flags existed was trained the official way,
    # not with today's defaults.
    for name, before in SETTINGS_BEFORE_THEIR_FLAG.items():
        saved.setdefault(name, before)
    return PretrainConfig(**saved)


def restore_model(model_dir):
    """`(model, config)`: the whole contrastive model of a run's last epoch.

    Rebuilds the model of `model_dir/config.json` (both encoders, queue
    and, for ActCLR, the average motion) and loads its latest checkpoint.
    Use it for what needs more than `query_network.keras`, such as
    ActCLR's actionlet, which comes from the key network and its anchor.
    """
    from kskel import checkpointing
    from kskel import fileio
    from kskel.data import schema

    config = load_config(model_dir)
    directory = fileio.join(model_dir, "checkpoints")
    # A JAX or PyTorch run saved .npz files; they load on any backend.
    file_format = checkpointing.saved_format(directory)
    manifest = schema.load_manifest(config.data_dir)
    model = build_model(config, schema.sample_shape(manifest))
    manager = checkpointing.make_checkpoint_manager(
        model, None, directory, file_format=file_format
    )
    manager.restore(optimizer=False)
    return model, config

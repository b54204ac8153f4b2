"""The MoCo machinery shared by SkeletonCLR, AimCLR and ActCLR.

A query network (ST-GCN + projection head) trained by gradients, a key
network updated only by an exponential moving average of the query's
trainable weights (its batch-norm statistics are its own, updated by its own
training-mode forward passes, as in the official code), and a queue of past
keys. Subclasses define `contrastive_loss(views)`; the momentum update, the
queue and the optimisation step are written once here.

The maths is `keras.ops` and runs on every backend. The training step is
backend-specific and lives in `kskel.models.steps` (TensorFlow, inside or
outside `tf.distribute.MirroredStrategy`; JAX, stateless, also under
`keras.distribution.DataParallel`; PyTorch).

Under a Keras mixed-precision policy the networks compute in float16 or
bfloat16; their outputs are cast back with `float32` where they leave the
networks, so normalisation, softmax, top-k, KL, the loss and the queue stay
float32 (see `MoCo`).
"""

import keras
import numpy as np
from keras import ops

from kskel.encoders import SkeletonClassifier
from kskel.encoders import STGCNEncoder
from kskel.errors import KskelError
from kskel.layers import ProjectionHead
from kskel.models import losses
from kskel.models import steps


def build_query_network(
    encoder_config=None, feature_dim=128, head_batch_norm=False
):
    """ST-GCN encoder + MLP projection head (the official `encoder_q`).

    The head's hidden layer is as wide as the encoder output (the official
    `dim_mlp = fc.in_features`).
    """
    encoder = STGCNEncoder(**(encoder_config or {}))
    head = ProjectionHead(
        encoder.hidden_dim,
        feature_dim,
        batch_norm=head_batch_norm,
        name="projection",
    )
    return SkeletonClassifier(encoder, head)


class MoCo(keras.Model):
    """Momentum encoder, queue and training step of MoCo v2.

    Args:
        encoder_config: dict of `STGCNEncoder` arguments.
        feature_dim: int, contrastive feature size. Defaults to 128.
        queue_size: int, K negatives. Defaults to 32768.
        momentum: float, EMA coefficient m of the key network.
            Defaults to 0.999.
        temperature: float, softmax temperature. Defaults to 0.07.
        head_batch_norm: bool, batch norm in the projection heads (not
            in the official code; see `ProjectionHead`). Defaults to
            `False`.
        key_init: `"independent"` (the official SkeletonCLR/AimCLR code
            re-initialises the key encoder with its own random draws) or
            `"copy"` (the key starts as a copy of the query, as MoCo
            intends). Defaults to `"independent"`.
        input_shape: the `(M, T, V, C)` of one view, used to build eagerly.
            Defaults to `(2, 50, 25, 3)`.
        seed: int, seeds the queue initialisation.

    Precision: under a mixed policy (`--precision` of pretraining; for
    GPUs and CPUs with bfloat16 units) the query and key networks compute
    in float16 or bfloat16; their variables, the queue, the momentum
    update and all loss maths stay float32 (outputs are cast on the way
    out). With float16, compile with a
    `keras.optimizers.LossScaleOptimizer`: `train_step` scales the loss
    with `optimizer.scale_loss` and `apply_gradients` unscales (a no-op for
    an optimizer without loss scale).
    """

    def __init__(
        self,
        encoder_config=None,
        feature_dim=128,
        queue_size=32768,
        momentum=0.999,
        temperature=0.07,
        head_batch_norm=False,
        key_init="independent",
        input_shape=(2, 50, 25, 3),
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if key_init not in ("independent", "copy"):
            raise KskelError(
                f"key_init must be 'independent' or 'copy', got {key_init!r}."
            )
        if not 0.0 <= momentum <= 1.0:
            raise KskelError(f"momentum must be in [0, 1], got {momentum}.")
        if temperature <= 0:
            raise KskelError(f"temperature must be > 0, got {temperature}.")
        self.encoder_config = dict(encoder_config or {})
        self.feature_dim = int(feature_dim)
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.temperature = float(temperature)
        self.head_batch_norm = bool(head_batch_norm)
        self.key_init = key_init
        self.view_shape = tuple(input_shape)
        self.seed = int(seed)

        self.query = build_query_network(
            self.encoder_config, self.feature_dim, self.head_batch_norm
        )
        self.key = build_query_network(
            self.encoder_config, self.feature_dim, self.head_batch_norm
        )
        batch_shape = (None, *self.view_shape)
        self.query.build(batch_shape)
        self.key.build(batch_shape)
        # The key network stays `trainable`: a Keras BatchNormalization with
        # `trainable=False` runs in inference mode, while the official key
        # encoder normalises with batch statistics. It gets no gradients
        # because `train_step` differentiates the query variables only.
        # Same architecture, so the weight lists align one to one.
        self._ema_pairs = [
            (k, q)
            for k, q in zip(self.key.weights, self.query.weights)
            if q.trainable
        ]
        if key_init == "copy":
            for k, q in zip(self.key.weights, self.query.weights):
                # A copy: on JAX two variables must not share one buffer.
                k.assign(ops.copy(q))

        queue = keras.random.normal(
            (self.queue_size, self.feature_dim), seed=self.seed
        )
        self.queue = self.add_weight(
            name="queue",
            shape=(self.queue_size, self.feature_dim),
            initializer=lambda shape, dtype: losses.l2_normalize(queue),
            trainable=False,
            aggregation="only_first_replica",
        )
        self.queue_ptr = self.add_weight(
            name="queue_ptr",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        # 1-based epoch, set by `EpochTracker`; losses may depend on it.
        self.epoch = self.add_weight(
            name="epoch",
            shape=(),
            dtype="int32",
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", *self.METRICS)
        }

    def compile(self, optimizer="sgd", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        # Slots created now, not inside the first traced step (which would
        # trace the step twice).
        self.optimizer.build(self.query.trainable_variables)
        self.built = True

    # Names of the scalars `contrastive_loss` reports besides the loss.
    METRICS = ("contrast_acc",)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """L2-normalised query features of one view, `(N, feature_dim)`."""
        return losses.l2_normalize(
            float32(self.query(inputs, training=training))
        )

    def momentum_update(self):
        """theta_k <- m theta_k + (1 - m) theta_q over trainable weights only.

        Batch-norm moving statistics are not averaged: the key network keeps
        the ones its own forward passes produce.
        """
        m = self.momentum
        for k, q in self._ema_pairs:
            k.assign(m * k + (1.0 - m) * ops.cast(q, k.dtype))

    def encode_keys(self, views, training=True):
        """L2-normalised keys from the key network (training mode)."""
        return ops.stop_gradient(
            losses.l2_normalize(float32(self.key(views, training=training)))
        )

    def fill_queue(self, keys):
        """Replaces the random initial queue by `keys` and resets the pointer.

        For `--queue_init=keys`: with the key network's features of
        training samples in the queue, the first steps contrast against
        real samples instead of random vectors (see `pretraining`).

        Args:
            keys: (n, feature_dim) array, n >= 1; rows are L2-normalised and
                repeated when n < queue_size, the first queue_size are used.
        """
        keys = np.asarray(keys, np.float32)
        if keys.ndim != 2 or keys.shape[1] != self.feature_dim or not len(keys):
            raise KskelError(
                f"fill_queue: expected keys of shape (n, {self.feature_dim}), "
                f"got {keys.shape}."
            )
        if not np.isfinite(keys).all():
            raise KskelError("fill_queue: the keys are not finite.")
        repeats = -(-self.queue_size // len(keys))
        keys = np.tile(keys, (repeats, 1))[: self.queue_size]
        self.queue.assign(losses.l2_normalize(ops.convert_to_tensor(keys)))
        self.queue_ptr.assign(ops.zeros_like(self.queue_ptr))

    def enqueue(self, keys):
        """Writes `keys` (the global batch) at the pointer and advances it."""
        num_keys = ops.shape(keys)[0]
        ptr = self.queue_ptr
        indices = ops.expand_dims(ops.arange(num_keys, dtype="int32") + ptr, 1)
        indices = ops.mod(indices, self.queue_size)
        self.queue.assign(ops.scatter_update(self.queue, indices, keys))
        self.queue_ptr.assign(ops.mod(ptr + num_keys, self.queue_size))

    def contrastive_loss(self, views):
        """Returns `(loss, metrics, keys)`; subclasses define it.

        `metrics` maps each name of `METRICS` to a scalar; `keys` are this
        replica's L2-normalised keys to enqueue.
        """
        raise NotImplementedError

    def train_step(self, *args):
        # `(data,)` on TensorFlow and PyTorch, `(state, data)` on JAX.
        logs = steps.train_step(self, *args)
        if self._works_around_keras_20585():
            # Keras reduces these over axis 0 across workers (see below).
            logs = {name: ops.reshape(v, (1,)) for name, v in logs.items()}
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TensorFlow trainer only; skipped as `_works_around_keras_20585`
        # explains.
        if not self._works_around_keras_20585():
            super()._maybe_symbolic_build(iterator, data_batch)

    def _works_around_keras_20585(self):
        """Whether `fit` runs under `MultiWorkerMirroredStrategy` (TF).

        Keras 3 (3.15) `fit` has two gaps with this strategy
        (keras-team/keras#20585); a later Keras may close them, and then
        this hook and its two uses above can go:

        - Before the first step Keras all-reduces one whole input batch to
          build the model symbolically; the strategy's `reduce` takes no
          nested structure such as a tuple of views, so this fails. A
          `MoCo` is built in `__init__` and its optimizer in `compile`, so
          the step has nothing to do and `_maybe_symbolic_build` skips it.
        - Keras reduces each step's logs across workers with a mean over
          axis 0, which scalars do not have. `train_step` returns them with
          shape `(1,)` and they come out of that reduction as the scalar
          mean; they are metric results whose variables already sum every
          replica's updates, so all replicas hold the same global value.

        Decided from the strategy the model was created under, so a model
        built in that strategy's scope needs nothing else.
        """
        if keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        return isinstance(
            self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy
        )

    def get_config(self):
        return {
            "name": self.name,
            "encoder_config": self.encoder_config,
            "feature_dim": self.feature_dim,
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "temperature": self.temperature,
            "head_batch_norm": self.head_batch_norm,
            "key_init": self.key_init,
            "input_shape": list(self.view_shape),
            "seed": self.seed,
        }


class EpochTracker(keras.callbacks.Callback):
    """Sets `model.epoch` to the 1-based epoch at the start of each epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.epoch.assign(epoch + 1)


def float32(x):
    """Casts a network output to float32 (a no-op under the float32 policy).

    Under a mixed policy the networks return float16 or bfloat16 tensors;
    the contrastive maths that follows runs in float32.
    """
    return ops.cast(x, "float32")

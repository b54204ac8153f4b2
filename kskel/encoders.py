"""The ST-GCN encoder and the models built on it.

Tensor layout: a batch is `(N, M, T, V, C)`: samples, bodies, frames, joints,
coordinates. Inside the encoder the bodies fold into the batch,
`(N * M, T, V, C)` with sample index `n * M + m`, as in the official code.

Reference: Yan et al., "Spatial Temporal Graph Convolutional Networks for
Skeleton-Based Action Recognition", AAAI 2018; the encoder configuration of
SkeletonCLR / AimCLR / ActCLR (`hidden_channels=16`, `hidden_dim=256`).
"""

import keras
from keras import ops

from kskel import graph
from kskel.layers import initializers
from kskel.layers.projection_head import ProjectionHead
from kskel.layers.stgcn_block import STGCNBlock


def block_specs(base_width=16, hidden_dim=256):
    """(filters, stride, residual) of the ten ST-GCN blocks."""
    b = base_width
    return (
        (b, 1, False),
        (b, 1, True),
        (b, 1, True),
        (b, 1, True),
        (2 * b, 2, True),
        (2 * b, 1, True),
        (2 * b, 1, True),
        (4 * b, 2, True),
        (4 * b, 1, True),
        (hidden_dim, 1, True),
    )


@keras.saving.register_keras_serializable(package="kskel")
class STGCNEncoder(keras.Model):
    """ST-GCN backbone with data batch norm, person folding and pooling.

    Calling the encoder returns the pooled features `(N, hidden_dim)`:
    average over frames and joints, then the mean over bodies (absent,
    all-zero bodies included, as in the official code).
    `feature_map(x)` returns the last block's output `(N * M, T', V,
    hidden_dim)` and `pool(h, num_bodies)` pools it; ActCLR uses both.

    Args:
        layout: str, skeleton layout name. Defaults to `"ntu25"`.
        in_channels: int, coordinates per joint. Defaults to 3.
        base_width: int, channels of the first blocks. Defaults to 16.
        hidden_dim: int, channels of the last block. Defaults to 256.
        dropout: float, dropout inside blocks 1-9 (active in training mode
            only). Defaults to 0.5.
        edge_importance: bool, learnable edge importance. Defaults to `True`.
        sync_batch_norm: bool, batch statistics over all replicas of a
            `tf.distribute` strategy. Defaults to `False`.

    Input shape: `(N, M, T, V, C)`. Output shape: `(N, hidden_dim)`.

    Example:
    >>> encoder = STGCNEncoder()
    >>> encoder(np.zeros((2, 2, 50, 25, 3), "float32")).shape
    (2, 256)
    """

    def __init__(
        self,
        layout="ntu25",
        in_channels=3,
        base_width=16,
        hidden_dim=256,
        dropout=0.5,
        edge_importance=True,
        sync_batch_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.layout = graph.get_layout(layout).name
        self.num_joints = graph.get_layout(layout).num_joints
        self.in_channels = int(in_channels)
        self.base_width = int(base_width)
        self.hidden_dim = int(hidden_dim)
        self.dropout = float(dropout)
        self.edge_importance = bool(edge_importance)
        self.sync_batch_norm = bool(sync_batch_norm)

        self.data_bn = initializers.batch_norm(
            "data_bn", synchronized=self.sync_batch_norm
        )
        self.blocks = [
            STGCNBlock(
                filters,
                stride=stride,
                residual=residual,
                dropout=self.dropout if i > 0 else 0.0,
                layout=self.layout,
                edge_importance=self.edge_importance,
                sync_batch_norm=self.sync_batch_norm,
                name=f"block_{i}",
            )
            for i, (filters, stride, residual) in enumerate(
                block_specs(self.base_width, self.hidden_dim)
            )
        ]

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                "STGCNEncoder expects (N, M, T, V, C) inputs. "
                f"Received: input_shape={input_shape}"
            )
        _, _, frames, joints, channels = input_shape
        if joints != self.num_joints or channels != self.in_channels:
            raise ValueError(
                f"STGCNEncoder({self.layout!r}) expects V={self.num_joints} "
                f"joints and C={self.in_channels} channels. "
                f"Received: input_shape={input_shape}"
            )
        self._build_input_shape = tuple(input_shape)
        self.data_bn.build((None, frames, joints * channels))
        shape = (None, frames, joints, channels)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.built = True

    def get_build_config(self):
        return {"input_shape": self._build_input_shape}

    def build_from_config(self, config):
        self.build(tuple(config["input_shape"]))

    def feature_map(self, inputs, training=None):
        """Last block output, `(N * M, T', V, hidden_dim)`."""
        _, bodies, frames, joints, channels = inputs.shape
        # Data BN normalises channel v * C + c over (N * M, T).
        x = ops.reshape(inputs, (-1, frames, joints * channels))
        x = self.data_bn(x, training=training)
        x = ops.reshape(x, (-1, frames, joints, channels))
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def pool(self, feature_map, num_bodies, weights=None):
        """Pools `(N * M, T', V, F)` to `(N, F)`.

        Args:
            feature_map: the output of `feature_map`.
            num_bodies: int, M.
            weights: optional `(N * M, T', V)` non-negative weights; when
                given, a weighted average over (T', V) replaces the plain
                one (ActCLR's semantic-aware feature pooling).
        """
        if weights is None:
            pooled = ops.mean(feature_map, axis=(1, 2))
        else:
            w = ops.expand_dims(weights, -1)
            pooled = ops.sum(feature_map * w, axis=(1, 2)) / (
                ops.sum(w, axis=(1, 2)) + 1e-5
            )
        pooled = ops.reshape(pooled, (-1, num_bodies, pooled.shape[-1]))
        return ops.mean(pooled, axis=1)

    def call(self, inputs, training=None):
        return self.pool(
            self.feature_map(inputs, training=training), inputs.shape[1]
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.hidden_dim)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layout": self.layout,
            "in_channels": self.in_channels,
            "base_width": self.base_width,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "edge_importance": self.edge_importance,
            "sync_batch_norm": self.sync_batch_norm,
        }


@keras.saving.register_keras_serializable(package="kskel")
class SkeletonClassifier(keras.Model):
    """An encoder followed by a head on its pooled features.

    With a `Dense(num_classes)` head this is the linear-evaluation and
    fine-tuning classifier of the papers (`fc` on 256-d features); with a
    `ProjectionHead` it is the pretraining query network.

    Args:
        encoder: an `STGCNEncoder`.
        head: a Keras layer applied to the pooled features, or an int
            `num_classes` for a linear classifier.

    Input shape: `(N, M, T, V, C)`. Output: `(N, head_dim)` logits.
    """

    def __init__(self, encoder, head, **kwargs):
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        if isinstance(head, dict):
            head = keras.saving.deserialize_keras_object(head)
        elif isinstance(head, int):
            head = linear_head(head)
        self.encoder = encoder
        self.head = head

    def build(self, input_shape):
        self._build_input_shape = tuple(input_shape)
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.head.built:
            self.head.build((input_shape[0], self.encoder.hidden_dim))
        self.built = True

    def get_build_config(self):
        return {"input_shape": self._build_input_shape}

    def build_from_config(self, config):
        self.build(tuple(config["input_shape"]))

    @property
    def num_outputs(self):
        if isinstance(self.head, ProjectionHead):
            return self.head.output_dim
        return self.head.units

    @property
    def is_classifier(self):
        return isinstance(self.head, keras.layers.Dense)

    def call(self, inputs, training=None):
        features = self.encoder(inputs, training=training)
        return self.head(features, training=training)

    def features(self, inputs, training=False):
        """Pooled encoder features, `(N, hidden_dim)`."""
        return self.encoder(inputs, training=training)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "head": keras.saving.serialize_keras_object(self.head),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def linear_head(num_classes, name="classifier"):
    """The linear classifier on pooled features (N(0, 0.02) init)."""
    return keras.layers.Dense(
        int(num_classes),
        kernel_initializer=initializers.conv_kernel(),
        name=name,
    )

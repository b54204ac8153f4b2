"""The MoCo projection MLP of SkeletonCLR / AimCLR / ActCLR."""

import keras
from keras import ops

from kskel.layers import initializers
from kskel.layers.batch_norm import BatchNorm


@keras.saving.register_keras_serializable(package="kskel")
class ProjectionHead(keras.layers.Layer):
    """`Dense(hidden_dim) -> [BN] -> ReLU -> Dense(output_dim) [-> BN]`.

    The official head has no batch norm. `batch_norm=True` makes it the
    MoCo v3 projector: batch norm after the hidden layer and a batch norm
    without scale and offset on the output. Centring the output over the
    batch removes the common translation that the first large SGD steps of
    the official recipe add to every output, which turns all features
    towards one direction (see `docs/DESIGN.md`, "Collapse at the start of
    pretraining").

    Args:
        hidden_dim: int, width of the hidden layer. Defaults to 256.
        output_dim: int, feature dimension of the contrastive space.
            Defaults to 128.
        batch_norm: bool, batch norm after the hidden layer. Defaults to
            `False` (official).

    Input shape: `(batch, ..., C)`. Output shape: `(batch, ..., output_dim)`.
    """

    def __init__(
        self, hidden_dim=256, output_dim=128, batch_norm=False, **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
        self.batch_norm = bool(batch_norm)
        self.hidden_bn = self.output_bn = None
        if self.batch_norm:
            self.hidden_bn = initializers.batch_norm("hidden_bn")
            self.output_bn = BatchNorm(
                momentum=0.9,
                epsilon=1e-5,
                center=False,
                scale=False,
                name="output_bn",
            )
        self.hidden = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=initializers.conv_kernel(),
            name="hidden",
        )
        self.output_layer = keras.layers.Dense(
            self.output_dim,
            kernel_initializer=initializers.conv_kernel(),
            name="output",
        )

    def build(self, input_shape):
        self.hidden.build(input_shape)
        if self.hidden_bn is not None:
            self.hidden_bn.build((*input_shape[:-1], self.hidden_dim))
        self.output_layer.build((*input_shape[:-1], self.hidden_dim))
        if self.output_bn is not None:
            self.output_bn.build((*input_shape[:-1], self.output_dim))

    def call(self, inputs, training=None):
        hidden = self.hidden(inputs)
        if self.hidden_bn is not None:
            hidden = self.hidden_bn(hidden, training=training)
        outputs = self.output_layer(ops.relu(hidden))
        if self.output_bn is not None:
            outputs = self.output_bn(outputs, training=training)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "output_dim": self.output_dim,
                "batch_norm": self.batch_norm,
            }
        )
        return config

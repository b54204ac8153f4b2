"""The MoCo projection MLP of SkeletonCLR / AimCLR / ActCLR."""

import keras
from keras import ops

from kskel.layers import initializers


@keras.saving.register_keras_serializable(package="kskel")
class ProjectionHead(keras.layers.Layer):
    """`Dense(hidden_dim) -> ReLU -> Dense(output_dim)`, no batch norm.

    Args:
        hidden_dim: int, width of the hidden layer. Defaults to 256.
        output_dim: int, feature dimension of the contrastive space.
            Defaults to 128.

    Input shape: `(batch, ..., C)`. Output shape: `(batch, ..., output_dim)`.
    """

    def __init__(self, hidden_dim=256, output_dim=128, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.output_dim = int(output_dim)
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
        self.output_layer.build((*input_shape[:-1], self.hidden_dim))

    def call(self, inputs):
        return self.output_layer(ops.relu(self.hidden(inputs)))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"hidden_dim": self.hidden_dim, "output_dim": self.output_dim}
        )
        return config

"""One spatial-temporal block of ST-GCN, channels-last."""

import keras
from keras import ops

from kskel.layers import initializers
from kskel.layers.convolutions import PointwiseConv2D
from kskel.layers.convolutions import TemporalConv2D
from kskel.layers.dropout import Dropout
from kskel.layers.graph_conv import GraphConv

TEMPORAL_KERNEL = 9


@keras.saving.register_keras_serializable(package="kskel")
class STGCNBlock(keras.layers.Layer):
    """ST-GCN block: graph conv, then temporal conv, plus a residual.

    `GraphConv -> BN -> ReLU -> ZeroPad(4, 4 on T) -> Conv(9x1, stride s)
    -> BN -> Dropout`, added to the residual branch, then ReLU. The residual
    is absent when `residual=False`, the identity when the input has
    `filters` channels and `stride == 1`, and otherwise a strided 1x1
    convolution followed by BN.

    The temporal convolution pads 4 frames on each side explicitly, as the
    official `padding=(4, 0)`: Keras' `"same"` padding with stride 2 at
    T=50 would sample odd frames instead of even ones.

    Args:
        filters: int, output channels.
        stride: int, temporal stride (1 or 2). Defaults to 1.
        residual: bool, whether to add a residual branch. Defaults to `True`.
        dropout: float, dropout rate after the temporal convolution.
            Defaults to `0.0`.
        layout: str, skeleton layout name. Defaults to `"ntu25"`.
        edge_importance: bool, learnable edge importance in the graph conv.
            Defaults to `True`.
        sync_batch_norm: bool, batch statistics over all replicas.
            Defaults to `False` (per replica, as the official code).

    Input shape: `(batch, T, V, C_in)`.
    Output shape: `(batch, floor((T - 1) / stride) + 1, V, filters)`.
    """

    def __init__(
        self,
        filters,
        stride=1,
        residual=True,
        dropout=0.0,
        layout="ntu25",
        edge_importance=True,
        sync_batch_norm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if stride not in (1, 2):
            raise ValueError(f"`stride` must be 1 or 2. Received: {stride}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"`dropout` must be in [0, 1). Received: dropout={dropout}"
            )
        self.filters = int(filters)
        self.stride = int(stride)
        self.residual = bool(residual)
        self.dropout = float(dropout)
        self.layout = layout
        self.edge_importance = bool(edge_importance)
        self.sync_batch_norm = bool(sync_batch_norm)
        sync = self.sync_batch_norm

        self.gcn = GraphConv(
            self.filters,
            layout=layout,
            edge_importance=edge_importance,
            name="gcn",
        )
        self.tcn_bn1 = initializers.batch_norm("tcn_bn1", synchronized=sync)
        self.tcn_conv = TemporalConv2D(
            self.filters,
            (TEMPORAL_KERNEL, 1),
            frame_padding=(TEMPORAL_KERNEL - 1) // 2,
            strides=(self.stride, 1),
            padding="valid",
            kernel_initializer=initializers.conv_kernel(),
            name="tcn_conv",
        )
        self.tcn_bn2 = initializers.batch_norm("tcn_bn2", synchronized=sync)
        self.tcn_dropout = Dropout(self.dropout)
        self.residual_conv = None
        self.residual_bn = None

    def residual_mode(self, in_channels):
        """'none', 'identity' or 'conv' for an input of `in_channels`."""
        if not self.residual:
            return "none"
        if in_channels == self.filters and self.stride == 1:
            return "identity"
        return "conv"

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.gcn.build(input_shape)
        gcn_shape = self.gcn.compute_output_shape(input_shape)
        self.tcn_bn1.build(gcn_shape)
        self.tcn_conv.build(gcn_shape)
        out_shape = self.compute_output_shape(input_shape)
        self.tcn_bn2.build(out_shape)
        if self.residual_mode(in_channels) == "conv":
            # Stride 1 on frames sampled in `call`: the same values as a
            # strided 1x1 conv. TensorFlow's CPU filter gradient of the
            # strided 1x1 conv (4 input channels, 2 processes sharing the
            # cores) came out wrong in 2 of 14 repeated steps, by up to
            # 11 % of that kernel's update; sampled first, 0 of 25.
            self.residual_conv = PointwiseConv2D(
                self.filters,
                (1, 1),
                padding="valid",
                kernel_initializer=initializers.conv_kernel(),
                name="residual_conv",
            )
            self.residual_conv.build(input_shape)
            self.residual_bn = initializers.batch_norm(
                "residual_bn", synchronized=self.sync_batch_norm
            )
            self.residual_bn.build(out_shape)

    def call(self, inputs, training=None):
        x = self.gcn(inputs)
        x = ops.relu(self.tcn_bn1(x, training=training))
        x = self.tcn_conv(x)
        x = self.tcn_bn2(x, training=training)
        x = self.tcn_dropout(x, training=training)
        mode = self.residual_mode(inputs.shape[-1])
        if mode == "identity":
            x = x + inputs
        elif mode == "conv":
            res = self.residual_conv(_sample_frames(inputs, self.stride))
            x = x + self.residual_bn(res, training=training)
        return ops.relu(x)

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        if frames is not None:
            frames = (frames - 1) // self.stride + 1
        return (input_shape[0], frames, input_shape[2], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "stride": self.stride,
                "residual": self.residual,
                "dropout": self.dropout,
                "layout": self.layout,
                "edge_importance": self.edge_importance,
                "sync_batch_norm": self.sync_batch_norm,
            }
        )
        return config


def _sample_frames(inputs, stride):
    """`inputs[:, ::stride]` for a `(N, T, V, C)` tensor with static T, V, C.

    As a reshape to `(N, T', stride, V * C)` and a split: on TensorFlow's
    CPU kernels the strided slice and its gradient took 4x as long.
    """
    frames, joints, channels = inputs.shape[1:]
    if stride == 1:
        return inputs
    if None in (frames, joints, channels):
        return inputs[:, ::stride]
    sampled = -(-frames // stride)
    extra = sampled * stride - frames
    if extra:
        inputs = ops.pad(inputs, ((0, 0), (0, extra), (0, 0), (0, 0)))
    x = ops.reshape(inputs, (-1, sampled, stride, joints * channels))
    x = ops.split(x, stride, axis=2)[0]
    return ops.reshape(x, (-1, sampled, joints, channels))

"""Spatial graph convolution of ST-GCN, channels-last."""

import keras
from keras import ops

from kskel import graph
from kskel.layers import initializers


@keras.saving.register_keras_serializable(package="kskel")
class GraphConv(keras.layers.Layer):
    """ST-GCN spatial graph convolution with learnable edge importance.

    A 1x1 convolution maps `C_in` to `K * filters` channels (k-major), then
    each of the `K` partitions is aggregated over the skeleton graph with its
    adjacency matrix multiplied element-wise by a learnable edge importance
    (initialised to 1):
    `out[n, t, w, f] = sum_k sum_v y[n, t, v, k, f] * (A[k] * E[k])[v, w]`.

    The adjacency is the fixed 'spatial' partition of the named layout
    (`kskel.graph`); it is a constant of the layer, not a weight.

    Args:
        filters: int, number of output channels.
        layout: str, name of a registered skeleton layout. Defaults to
            `"ntu25"`.
        edge_importance: bool, whether to learn edge importance weights.
            Defaults to `True`.
        kernel_initializer: initializer of the 1x1 convolution kernel.
            Defaults to N(0, 0.02) as in the official code.
        bias_initializer: initializer of the bias. Defaults to `"zeros"`.

    Input shape: `(batch, T, V, C_in)`. Output shape: `(batch, T, V, filters)`.

    Example:
    >>> layer = GraphConv(16)
    >>> layer(np.zeros((2, 50, 25, 3), "float32")).shape
    (2, 50, 25, 16)
    """

    def __init__(
        self,
        filters,
        layout="ntu25",
        edge_importance=True,
        kernel_initializer=None,
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(filters) <= 0:
            raise ValueError(
                f"`filters` must be positive. Received: filters={filters}"
            )
        self.filters = int(filters)
        self.layout = graph.get_layout(layout).name
        self.edge_importance = bool(edge_importance)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or initializers.conv_kernel()
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._adjacency = graph.get_layout(self.layout).adjacency()
        self.num_partitions = self._adjacency.shape[0]
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        num_joints = self._adjacency.shape[-1]
        if input_shape[2] != num_joints:
            raise ValueError(
                f"Layout {self.layout!r} has {num_joints} joints, but the "
                f"input has {input_shape[2]} on axis 2 (T, V, C). "
                f"Received: input_shape={input_shape}"
            )
        in_channels = input_shape[-1]
        k_filters = self.num_partitions * self.filters
        self.kernel = self.add_weight(
            name="kernel",
            shape=(in_channels, k_filters),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias", shape=(k_filters,), initializer=self.bias_initializer
        )
        if self.edge_importance:
            self.importance = self.add_weight(
                name="edge_importance",
                shape=self._adjacency.shape,
                initializer="ones",
            )
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={-1: in_channels, 2: num_joints}
        )

    def effective_adjacency(self):
        """`A * E`, shape (K, V, V)."""
        adjacency = ops.convert_to_tensor(self._adjacency, dtype=self.dtype)
        if self.edge_importance:
            return adjacency * ops.cast(self.importance, adjacency.dtype)
        return adjacency

    def call(self, inputs):
        # Per partition, one matmul over the joints with the (V, V) matrix
        # broadcast over N * T and one over the channels, summed over the
        # partitions: no transpose of activations, and the joint mixing
        # runs on the narrower of C_in and filters (the same sum as the
        # official conv-then-einsum, reassociated).
        shape = ops.shape(inputs)
        joints, in_channels = inputs.shape[2], inputs.shape[3]
        x = ops.reshape(inputs, (-1, joints, in_channels))
        adjacency = ops.cast(self.effective_adjacency(), x.dtype)
        kernel = ops.reshape(
            ops.cast(self.kernel, x.dtype),
            (in_channels, self.num_partitions, self.filters),
        )
        mix_first = in_channels <= self.filters
        out = None
        for k in range(self.num_partitions):
            mixing = ops.transpose(adjacency[k])  # out[w] = sum_v A[v, w] x[v]
            if mix_first:
                y = ops.matmul(
                    ops.reshape(ops.matmul(mixing, x), (-1, in_channels)),
                    kernel[:, k],
                )
            else:
                y = ops.matmul(
                    mixing,
                    ops.reshape(
                        ops.matmul(
                            ops.reshape(x, (-1, in_channels)), kernel[:, k]
                        ),
                        (-1, joints, self.filters),
                    ),
                )
            y = ops.reshape(y, (-1, joints, self.filters))
            out = y if out is None else out + y
        # The bias of partition k reaches joint w with weight sum_v A_k[v, w].
        bias = ops.matmul(
            ops.transpose(ops.sum(adjacency, axis=1)),
            ops.reshape(
                ops.cast(self.bias, x.dtype),
                (self.num_partitions, self.filters),
            ),
        )
        return ops.reshape(
            out + bias, (shape[0], shape[1], joints, self.filters)
        )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "layout": self.layout,
                "edge_importance": self.edge_importance,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config

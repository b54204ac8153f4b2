"""Spatial graph convolution of ST-GCN, channels-last."""

import keras
from keras import ops

from kskel import graph
from kskel.layers import initializers

# Input channels from which the joints are mixed by one batched matmul on
# the input's own layout (no transposes). Forward-backward per layer
# (N * T = 3328 to 12800, TensorFlow 2.21 CPU): 16 -> 16 channels 89
# against 106 ms for the transposed form, 32 -> 32 82 against 95, 64 -> 64
# 100 against 129, 64 -> 256 251 against 298; at 3 -> 16 the batched form
# takes 58 against 27 ms.
BATCHED_MIXING_CHANNELS = 16


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
        # The same sum as the official conv-then-einsum, reassociated into
        # two matmuls: the joint mixing of all K partitions at once on the
        # narrower of C_in and filters (from BATCHED_MIXING_CHANNELS input
        # channels as a batched matmul, else with the joints moved last by
        # one transpose), and the channel matmul over (partition, channel).
        # Faster than per-partition matmuls with the (V, V) matrix
        # broadcast over N * T, whose gradient is a batched matmul of
        # N * T tiny products then a sum (benchmarks/README.md).
        shape = ops.shape(inputs)
        joints, in_channels = inputs.shape[2], inputs.shape[3]
        parts, filters = self.num_partitions, self.filters
        x = ops.reshape(inputs, (-1, joints, in_channels))
        adjacency = ops.cast(self.effective_adjacency(), x.dtype)
        kernel = ops.cast(self.kernel, x.dtype)  # (C_in, K * filters)
        if in_channels <= filters:
            if in_channels >= BATCHED_MIXING_CHANNELS:
                # z[n, w, k, c] = sum_v A[k, v, w] x[n, v, c]: the (W * K, V)
                # mixing matrix broadcast over the N * T frames leaves
                # (partition, channel) contiguous for the channel matmul.
                mixing = ops.reshape(
                    ops.transpose(adjacency, (2, 0, 1)),
                    (joints * parts, joints),
                )
                z = ops.matmul(mixing, x)
            else:
                # z[n, k, c, w] = sum_v x[n, v, c] A[k, v, w], then moved
                # to (n, w, k, c).
                mixing = ops.reshape(
                    ops.transpose(adjacency, (1, 0, 2)),
                    (joints, parts * joints),
                )
                z = ops.matmul(
                    ops.reshape(ops.transpose(x, (0, 2, 1)), (-1, joints)),
                    mixing,
                )
                z = ops.transpose(
                    ops.reshape(z, (-1, in_channels, parts, joints)),
                    (0, 3, 2, 1),
                )
            kernel = ops.transpose(
                ops.reshape(kernel, (in_channels, parts, filters)), (1, 0, 2)
            )
            out = ops.matmul(
                ops.reshape(z, (-1, parts * in_channels)),
                ops.reshape(kernel, (parts * in_channels, filters)),
            )
            out = ops.reshape(out, (-1, joints, filters))
        else:
            # y[n, f, k, v] = sum_c x[n, v, c] W[c, k, f], then mixed.
            y = ops.reshape(
                ops.matmul(ops.reshape(x, (-1, in_channels)), kernel),
                (-1, joints, parts, filters),
            )
            y = ops.reshape(
                ops.transpose(y, (0, 3, 2, 1)), (-1, parts * joints)
            )
            out = ops.matmul(
                y, ops.reshape(adjacency, (parts * joints, joints))
            )
            out = ops.transpose(
                ops.reshape(out, (-1, filters, joints)), (0, 2, 1)
            )
        # The bias of partition k reaches joint w with weight sum_v A_k[v, w].
        bias = ops.matmul(
            ops.transpose(ops.sum(adjacency, axis=1)),
            ops.reshape(ops.cast(self.bias, x.dtype), (parts, filters)),
        )
        return ops.reshape(out + bias, (shape[0], shape[1], joints, filters))

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

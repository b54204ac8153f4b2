"""`Conv2D` variants with faster gradients for ST-GCN's shapes.

Each keeps `keras.layers.Conv2D`'s weights, values and serialization; only
how the training step computes them changes. The timings are TensorFlow
2.21's oneDNN kernels on a 2-core AVX2 CPU at the encoder's largest block
(256 x 13 x 25 positions; benchmarks/README.md).
"""

import keras
from keras import ops

# Input channels from which the temporal conv's filter gradient runs as
# matmuls. Forward-backward of the conv alone at 13 frames: 256 channels
# about 1.6 s against 2.7 s with TensorFlow's own filter gradient, 64
# channels 100-105 ms against 114-120 ms; at 32 channels (25 frames) both
# take about 70 ms, and below that TensorFlow's is faster.
MATMUL_FILTER_GRADIENT_CHANNELS = 64


class PointwiseConv2D(keras.layers.Conv2D):
    """A 1x1, stride-1 `Conv2D` computed as one matmul over the channels.

    oneDNN's filter gradient of a 1x1 conv is slow for wide outputs
    (64 -> 256 channels: 651 ms, against about 45 ms for the matmul's).
    """

    def __init__(self, filters, kernel_size=(1, 1), **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size != (1, 1) or self.strides != (1, 1):
            raise ValueError(
                "PointwiseConv2D is 1x1 with stride 1. Received: "
                f"kernel_size={self.kernel_size}, strides={self.strides}"
            )

    def convolution_op(self, inputs, kernel):
        return ops.matmul(inputs, kernel[0, 0])


class TemporalConv2D(keras.layers.Conv2D):
    """A `(taps, 1)` conv along frames with `frame_padding` zeros each side.

    The same values as zero-padding the frames, then a "valid" `Conv2D`.
    On TensorFlow, at stride 1 and `MATMUL_FILTER_GRADIENT_CHANNELS` input
    channels or more, the filter gradient is one matmul per tap over the
    frames that tap reads outside the padding (`x[a:b]^T dy[c:d]`), not
    oneDNN's convolution kernel, which took 1418 ms there in the encoder
    (the taps: about 840 ms) and multiplies the padding's zeros (17 % of
    the products at 13 frames). The forward pass and the input gradient
    stay oneDNN's convolutions (the input gradient as a forward conv).

    Args:
        filters: int, output channels.
        kernel_size: `(taps, 1)`.
        frame_padding: int, zero frames added before and after.
        **kwargs: other `Conv2D` arguments (`strides`, initializers...);
            `padding` must be "valid" (the default).
    """

    def __init__(self, filters, kernel_size, frame_padding=0, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size[1] != 1 or self.padding != "valid":
            raise ValueError(
                "TemporalConv2D convolves frames only, its padding is "
                "`frame_padding`. Received: "
                f"kernel_size={self.kernel_size}, padding={self.padding}"
            )
        self.frame_padding = int(frame_padding)

    def uses_matmul_filter_gradient(self, in_channels):
        return (
            keras.backend.backend() == "tensorflow"
            and self.strides == (1, 1)
            and in_channels is not None
            and in_channels >= MATMUL_FILTER_GRADIENT_CHANNELS
        )

    def _pad(self, inputs):
        pad = self.frame_padding
        return ops.pad(inputs, ((0, 0), (pad, pad), (0, 0), (0, 0)))

    def convolution_op(self, inputs, kernel):
        if self.uses_matmul_filter_gradient(inputs.shape[-1]):
            return _tf_conv_with_matmul_filter_gradient(
                inputs, kernel, self.frame_padding
            )
        return super().convolution_op(self._pad(inputs), kernel)

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        if frames is not None:
            frames += 2 * self.frame_padding
        return super().compute_output_shape(
            (input_shape[0], frames, *input_shape[2:])
        )

    def get_config(self):
        config = super().get_config()
        config["frame_padding"] = self.frame_padding
        return config


def _tf_conv_with_matmul_filter_gradient(inputs, kernel, pad):
    import tensorflow as tf

    # A tensor, not the variable: custom_gradient then needs no
    # `variables` argument and the tape takes the kernel's gradient
    # through the read.
    kernel = tf.convert_to_tensor(kernel)
    taps, _, in_channels, filters = kernel.shape
    paddings = [[0, 0], [pad, pad], [0, 0], [0, 0]]

    @tf.custom_gradient
    def conv(x, w):
        padded = tf.pad(x, paddings)
        y = tf.nn.conv2d(padded, w, strides=1, padding="VALID")

        def grad(dy):
            # dx[s] = sum_k dy[s + pad - k] w[k]^T: at stride 1 a forward
            # conv of dy, padded by taps - 1 - pad, with the taps reversed
            # and the channels swapped; it yields x's frames directly,
            # where conv2d_transpose yields the padded ones to be sliced
            # (about 0.1 s slower per step at 256 channels).
            back = taps - 1 - pad
            dx = tf.nn.conv2d(
                tf.pad(dy, [[0, 0], [back, back], [0, 0], [0, 0]]),
                tf.transpose(tf.reverse(w, [0]), (0, 1, 3, 2)),
                strides=1,
                padding="VALID",
            )
            # Output frame t reads input frame t + k - pad through tap k;
            # frames in the padding add nothing.
            in_frames, out_frames = tf.shape(x)[1], tf.shape(dy)[1]
            # Frames first: each tap's rows are then a contiguous range
            # that TensorFlow slices without a copy (two transposes
            # instead of two row copies per tap).
            x_frames = tf.transpose(x, (1, 0, 2, 3))
            dy_frames = tf.transpose(dy, (1, 0, 2, 3))
            # One tap at a time: run concurrently, the taps' matmuls
            # raised the encoder's forward-backward peak memory by 0.5 GB.
            dw = []
            for k in range(taps):
                with tf.control_dependencies(dw[-1:]):
                    shift = k - pad
                    first = tf.maximum(0, -shift)
                    last = tf.maximum(
                        first, tf.minimum(out_frames, in_frames - shift)
                    )
                    x_rows = tf.reshape(
                        x_frames[first + shift : last + shift],
                        (-1, in_channels),
                    )
                    dy_rows = tf.reshape(dy_frames[first:last], (-1, filters))
                    dw.append(tf.matmul(dy_rows, x_rows, transpose_a=True))
            dw = tf.transpose(tf.stack(dw), (0, 2, 1))
            return dx, tf.reshape(dw, w.shape)

        return y, grad

    return conv(inputs, kernel)

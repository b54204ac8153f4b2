"""AimCLR's energy-based attention-guided drop module (EADM).

The official `Simam_Drop` (FACTS §6.3), channels-last: for each (sample,
channel) a SimAM energy gives an attention `a = sigmoid(d / (4 (var +
lambda)) + 0.5)` with `d = (x - mean)^2` over (T', V); the most attended
joints (mean attention over channels and frames >= keep_prob) are dropped,
then the most attended elements, each time rescaling by the kept fraction
of the whole batch tensor. The masks carry no gradient.
"""

from keras import ops


def simam_attention(x, lam=1e-4):
    """SimAM attention of `(N, T', V, C)` features, same shape."""
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    d = ops.square(x - mean)
    count = x.shape[1] * x.shape[2] - 1
    variance = ops.sum(d, axis=(1, 2), keepdims=True) / count
    return ops.sigmoid(d / (4.0 * (variance + lam)) + 0.5)


def _rescaled(x, mask):
    kept = ops.sum(mask)
    total = ops.cast(ops.size(mask), x.dtype)
    return x * mask * (total / ops.maximum(kept, 1.0))


def attention_drop(x, keep_prob=0.7, lam=1e-4):
    """EADM applied to a `(N * M, T', V, C)` feature map.

    Args:
        x: the encoder's last feature map.
        keep_prob: float, attention threshold (the official 0.7).
        lam: float, SimAM's lambda.
    """
    attention = ops.stop_gradient(simam_attention(x, lam))
    # Spatial drop: joints whose mean attention over (T', C) is high.
    joint_attention = ops.mean(attention, axis=(1, 3), keepdims=True)
    spatial = ops.cast(joint_attention < keep_prob, x.dtype)
    x = _rescaled(x, spatial)
    # "Temporal" drop: element-wise, from the original attention.
    elementwise = ops.cast(attention < keep_prob, x.dtype)
    return _rescaled(x, elementwise)

"""ActCLR's unsupervised actionlet: mask generation, SAFP and MATS helpers.

The actionlet is a soft (mostly binary) mask over the encoder's output grid
`(N * M, T', V)` that marks where a sequence differs from a static anchor
(FACTS §7.2, paper Eq. 3-5; where the official code's forms differ they
are options, the defaults here and in `ActCLR`, while the pretraining
CLI defaults to the paper's):

1. `z = head(mean_M GAP_{T',V}(h))` from the last feature map h;
   `s = mean_n cos(z_n, anchor)`.
2. `g = d(1 - s) / dh` (the gradient with respect to a stop-gradient copy
   of h only, `steps.input_gradient`, so no model weight, gradient
   accumulator or optimizer slot is touched);
   `alpha_c = mean_{T',V} sigma(g)`, sigma the identity (official code) or
   a ReLU (paper Eq. 4, `gradient_activation="relu"`).
3. `cam = relu(mean_c(alpha_c h))`, smoothed over the joints: each joint
   replaced by the mean of its body part (official code) or by the mean
   over its graph neighbours and itself (paper Eq. 5's `A G`,
   `smoothing="adjacency"`), per time step. Then `cam * scale` clipped to
   [0, 1] (official), or with a `threshold` t the map divided by t times
   its peak over each body's grid, then clipped: cells at >= t of the
   peak are 1. The paper's sum over channels differs from the mean by the
   constant C, which the peak-relative threshold ignores.

`mats_mix` blends two views with the time-upsampled mask (motion-adaptive
transformation, Eq. 7) and `mixed_key_weights` gives the per-sample weights
of the mixed key of ActCLR's third view. SAFP itself is the weighted
pooling of `STGCNEncoder.pool(h, num_bodies, weights=mask)`.

Reference: Lin et al., "Actionlet-Dependent Contrastive Learning for
Unsupervised Skeleton-Based Action Recognition", CVPR 2023, §3.1-3.2
(`net/st_gcn.py::_generate_mask`, `net/actclr.py`).
"""

import functools

import numpy as np
from keras import ops

from kskel.errors import KskelError
from kskel.graph import get_layout
from kskel.models import losses
from kskel.models.steps.input_gradient import input_gradient

MASK_AXES = ("feature", "head_collapse")
KC_MODES = ("per_sample", "v2023_broadcast")
GRADIENT_ACTIVATIONS = ("none", "relu")
SMOOTHINGS = ("body_part", "adjacency")


@functools.cache
def part_average_matrix(layout):
    """(V, V) float32 A with `(A @ cam)[v]` = mean of cam over v's part.

    Joints that belong to no body part keep their own value.
    """
    layout = get_layout(layout)
    average = np.eye(layout.num_joints, dtype=np.float32)
    for part in layout.body_parts:
        rows = np.array(part)
        average[rows] = 0.0
        average[np.ix_(rows, rows)] = 1.0 / len(part)
    return average


def body_part_mean(cam, layout):
    """Replaces each joint's value by the mean over its body part.

    Args:
        cam: float tensor (..., V).
        layout: layout name or `SkeletonLayout` (its `body_parts`).

    Returns:
        float tensor (..., V), constant over each body part.
    """
    return ops.einsum("...w,vw->...v", cam, part_average_matrix(layout))


@functools.cache
def adjacency_smoothing_matrix(layout):
    """(V, V) float32 G with `(cam @ G)[v]` = mean of cam over v's neighbours.

    The paper's "adjacency matrix for importance smoothing" (Eq. 5), taken
    as the encoder's own normalised adjacency with self-loops (the sum of
    the spatial partitions, `(A + I) D^-1`): each column sums to 1, so
    joint v gets the mean of itself and the joints it is linked to.
    """
    return np.sum(get_layout(layout).adjacency(), axis=0, dtype=np.float32)


def smooth_joints(cam, layout, smoothing="body_part"):
    """Spreads an activation map over neighbouring joints.

    Args:
        cam: float tensor (..., V).
        layout: layout name or `SkeletonLayout`.
        smoothing: "body_part" (official code: `body_part_mean`) or
            "adjacency" (paper Eq. 5: `adjacency_smoothing_matrix`).

    Returns:
        float tensor (..., V).
    """
    if smoothing == "body_part":
        return body_part_mean(cam, layout)
    if smoothing == "adjacency":
        smoothing_matrix = adjacency_smoothing_matrix(layout)
        return ops.einsum("...w,wv->...v", cam, smoothing_matrix)
    raise ValueError(
        f"smoothing must be one of {SMOOTHINGS}. "
        f"Received: smoothing={smoothing}"
    )


def anchor_similarity(z, anchor, mask_axis="feature"):
    """`s = mean_n cos(z_n, anchor)`, the quantity the mask pushes down.

    Args:
        z: (N, D) projected features.
        anchor: (1, D) projected anchor feature.
        mask_axis: "feature" normalises over D (paper, ActCLR-v2023).
            "head_collapse" reproduces ActCLR-HEAD, whose 1x1-conv head
            leaves z as (N, D, 1, 1) and normalises over the last, size-1
            axis: every entry becomes its sign, the gradient vanishes and
            the mask is ~0 (FACTS §0.1).

    Returns:
        scalar tensor.
    """
    if mask_axis == "feature":
        return ops.mean(
            ops.sum(losses.l2_normalize(z) * losses.l2_normalize(anchor), -1)
        )
    if mask_axis == "head_collapse":
        signs = losses.l2_normalize(z[..., None])
        anchor_signs = losses.l2_normalize(anchor[..., None])
        return ops.mean(ops.sum(signs * anchor_signs, -1))
    raise ValueError(
        f"mask_axis must be one of {MASK_AXES}. Received: mask_axis={mask_axis}"
    )


def actionlet_mask(
    h,
    project,
    anchor,
    layout,
    mask_axis="feature",
    scale=1e8,
    threshold=0.0,
    gradient_activation="none",
    smoothing="body_part",
):
    """The difference activation map of h against the anchor, in [0, 1].

    Args:
        h: float32 (N * M, T', V, F) last feature map (any gradient to it
            is cut here).
        project: callable mapping a feature map to (N, D) projected
            features, `head(encoder.pool(h, M))`.
        anchor: (1, D) projected anchor feature (no gradient).
        layout: layout name or `SkeletonLayout` (body parts).
        mask_axis: see `anchor_similarity`. Defaults to `"feature"`.
        scale: float, amplification before the clip (used when
            `threshold` is 0). Defaults to `1e8`, the official value.
        threshold: float in [0, 1]. 0 scales by `scale`; t > 0 divides
            each body's map by t times its peak instead (the map's own
            magnitude depends on the network: the demo encoder's peak
            near 6e-6, so x1e8 saturates it). Defaults to 0.
        gradient_activation: "none" (official code) or "relu" (paper Eq.
            4: only feature increases that lower the similarity count
            towards a channel's weight). Defaults to "none".
        smoothing: see `smooth_joints`. Defaults to "body_part".

    Returns:
        float32 tensor (N * M, T', V) without gradient.
    """
    if gradient_activation not in GRADIENT_ACTIVATIONS:
        raise ValueError(
            f"gradient_activation must be one of {GRADIENT_ACTIVATIONS}. "
            f"Received: gradient_activation={gradient_activation}"
        )
    h = ops.stop_gradient(h)
    anchor = ops.stop_gradient(anchor)

    def distance(h):
        return 1.0 - anchor_similarity(project(h), anchor, mask_axis)

    # Only h is a source: weights get no gradient, the optimizer is unused.
    grad = input_gradient(distance, h)
    if gradient_activation == "relu":
        grad = ops.relu(grad)
    alpha = ops.mean(grad, axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.mean(alpha * h, axis=-1))
    cam = smooth_joints(cam, layout, smoothing)
    return ops.stop_gradient(activation_to_mask(cam, scale, threshold))


def activation_to_mask(cam, scale=1e8, threshold=0.0):
    """A non-negative `(B, T', V)` activation map -> a mask in [0, 1].

    `clip(cam * scale)` when `threshold` is 0, else `clip(cam / (threshold
    * peak))` with each map's own peak (an all-zero map stays zero).
    """
    if threshold > 0:
        peak = ops.max(cam, axis=(1, 2), keepdims=True)
        cam = cam / ops.maximum(threshold * peak, 1e-30)
    else:
        cam = cam * scale
    return ops.clip(cam, 0.0, 1.0)


@functools.lru_cache(maxsize=64)
def time_interpolation(in_frames, out_frames):
    """(out, in) float32 linear interpolation matrix, align_corners=True.

    Output frame t reads input position `t * (in - 1) / (out - 1)`, as
    torch `interpolate(mode="bilinear", align_corners=True)` along time.
    """
    weights = np.zeros((out_frames, in_frames), np.float32)
    if in_frames == 1 or out_frames == 1:
        weights[:, 0] = 1.0
        return weights
    position = np.arange(out_frames) * (in_frames - 1) / (out_frames - 1)
    low = np.minimum(np.floor(position).astype(int), in_frames - 2)
    frac = position - low
    rows = np.arange(out_frames)
    weights[rows, low] = 1.0 - frac
    weights[rows, low + 1] = frac
    return weights


def upsample_time(mask, num_frames):
    """(B, T', V) grid mask -> (B, T, V) frames (bilinear, align_corners).

    The joint axis keeps its size, so bilinear reduces to linear in time.
    """
    weights = time_interpolation(mask.shape[1], num_frames)
    return ops.einsum("st,btv->bsv", weights, mask)


def mats_mix(x, y, mask):
    """Motion-adaptive mix: `x * up(mask) + y * (1 - up(mask))` (Eq. 7).

    Args:
        x: float32 (N, M, T, V, C), kept inside the actionlet.
        y: float32 (N, M, T, V, C), used outside it.
        mask: float32 (N * M, T', V) actionlet.

    Returns:
        float32 (N, M, T, V, C).
    """
    _, bodies, frames, joints, _ = x.shape
    up = upsample_time(mask, frames)
    up = ops.reshape(up, (-1, bodies, frames, joints, 1))
    return x * up + y * (1.0 - up)


def mixed_key_weights(mask, mask_p, mask_c, partner, num_bodies, tau=0.1):
    """Weights (p, c) of the partner's and the own key in the mixed key.

    With `w = exp(mask / tau)` on the grid, per sample (as official
    `_mask_pool`, the 1e-5 is added per cell on the partner side):
    `p = mean_M sum(w[partner] mask_p) / sum(w[partner] + 1e-5)`,
    `c = mean_M sum(w (1 - mask_c)) / (sum(w) + 1e-5)`, then both divided
    by `p + c`.

    Args:
        mask: float32 (N * M, T', V) actionlet of the mixed view's source.
        mask_p: (T', V) grid mask of the pasted partner content.
        mask_c: (T', V) grid mask of the replaced own content.
        partner: (N,) int32 partner indices.
        num_bodies: int, M.
        tau: float, the official 0.1.

    Returns:
        `(p, c)`, two float32 tensors of shape (N,).
    """
    cells, joints = mask.shape[1], mask.shape[2]
    w = ops.exp(ops.reshape(mask, (-1, num_bodies, cells, joints)) / tau)
    w_partner = ops.take(w, partner, axis=0)
    p = ops.sum(w_partner * mask_p, (2, 3)) / ops.sum(w_partner + 1e-5, (2, 3))
    c = ops.sum(w * (1.0 - mask_c), (2, 3)) / (ops.sum(w, (2, 3)) + 1e-5)
    p = ops.mean(p, 1)
    c = ops.mean(c, 1)
    return p / (p + c), c / (p + c)


def mixed_keys(keys, p, c, partner, kc_mode="per_sample"):
    """The mixed key of view C, `normalize(c k + p k[partner])`.

    Args:
        keys: (N, D) keys.
        p: (N,) partner weights (`mixed_key_weights`).
        c: (N,) own weights.
        partner: (N,) int32 partner indices.
        kc_mode: "per_sample" (ActCLR-HEAD: sample n uses p[n], c[n]) or
            "v2023_broadcast" (the code of the 87.14 % checkpoint: the
            (N,) weights broadcast along the feature axis, entry d uses
            p[d], c[d]; it only runs when N == D).

    Returns:
        (N, D) L2-normalised mixed keys.

    Raises:
        KskelError: "v2023_broadcast" with a batch other than D.
    """
    partner_keys = ops.take(keys, partner, axis=0)
    if kc_mode == "per_sample":
        return losses.l2_normalize(
            c[:, None] * keys + p[:, None] * partner_keys
        )
    if kc_mode != "v2023_broadcast":
        raise ValueError(
            f"kc_mode must be one of {KC_MODES}. Received: kc_mode={kc_mode}"
        )
    batch, dim = keys.shape
    message = (
        "kc_mode='v2023_broadcast' multiplies the per-sample weights along "
        f"the feature axis, so the per-replica batch must equal the feature "
        f"dimension {dim}"
    )
    if batch is None:  # A TensorFlow graph with an unknown batch size.
        import tensorflow as tf

        tf.debugging.assert_equal(tf.shape(keys)[0], dim, message=message)
    elif batch != dim:
        raise KskelError(
            f"{message}; got a batch of {batch}. Use kc_mode='per_sample' "
            "or a batch size equal to feature_dim."
        )
    return losses.l2_normalize(keys * c[None, :] + partner_keys * p[None, :])

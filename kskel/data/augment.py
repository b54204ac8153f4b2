"""Batched, seeded skeleton augmentations of AimCLR and ActCLR (FACTS §4.1).

Every augmentation takes a batch `x` of shape (N, M, T, V, C) float32
(bodies, frames, joints, xyz) and a stateless seed: an int32 or int64 tensor
of shape [2]. It returns a float32 tensor of the same shape. Random
parameters are drawn per sample with `tf.random.stateless_*` ops, so:

- the same seed and batch give the same output, eagerly, inside
  `tf.function` and inside `tf.data` `map` after `batch`;
- nothing runs in Python per sample, and the batch size may be unknown
  while tracing.

A sample-wise probability `p` means each sample is augmented independently
with probability `p`. Defaults are the official parameters. Where the
official numpy code returns float64 (the Gaussian blur, by numpy
promotion), this port stays float32.

Example:

    seed = tf.constant([7, 0], tf.int64)
    x = temporal_crop(x, seed)
    x = shear(x, tf.random.experimental.stateless_fold_in(seed, 1))
"""

import functools
import math

import numpy as np
import tensorflow as tf

from kskel.graph import get_layout

_T_AXIS = 2
_V_AXIS = 3


def _batch(x, name, coords=False):
    """Converts `x` to float32 and checks it is an (N, M, T, V, C) batch."""
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank != 5:
        raise ValueError(
            f"{name} expects a batch of shape (N, M, T, V, C). "
            f"Received: x.shape={x.shape}"
        )
    if coords and x.shape[-1] not in (None, 3):
        raise ValueError(
            f"{name} needs 3 coordinates (xyz) on the last axis. "
            f"Received: x.shape={x.shape}"
        )
    return x


def _seed(seed):
    """Checks and converts a stateless seed (shape [2], int32 or int64)."""
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(
            f"A seed must be int32 or int64. Received: seed.dtype={seed.dtype}"
        )
    if not seed.shape.is_compatible_with([2]):
        raise ValueError(
            f"A seed must have shape [2]. Received: seed.shape={seed.shape}"
        )
    return seed


def _split(seed, count):
    """`count` independent seeds derived from `seed`."""
    return tf.unstack(
        tf.random.experimental.stateless_split(_seed(seed), count), num=count
    )


def _dim(x, axis):
    """The static size of `axis` when known, else the dynamic one."""
    size = x.shape[axis]
    return size if size is not None else tf.shape(x)[axis]


def _num_samples(x):
    return tf.shape(x)[0]


def _coin(seed, n, p):
    """(N,) bool: True for each sample independently with probability p."""
    return tf.random.stateless_uniform([n], seed) < p


def _where_samples(apply, new, old):
    """Per-sample select: `new` where `apply` (N,) is True, else `old`."""
    return tf.where(tf.reshape(apply, [-1, 1, 1, 1, 1]), new, old)


def _apply_matrices(matrices, x):
    """x'[n, m, t, v] = matrices[n] @ x[n, m, t, v] for (N, 3, 3) matrices."""
    return tf.einsum("nij,nmtvj->nmtvi", matrices, x)


def temporal_crop(x, seed, ratio=6):
    """Random temporal shift inside symmetric padding (`temperal_crop`).

    Pads `floor(T / ratio)` frames on each side with numpy 'symmetric'
    padding (the edge frames mirrored, edge included), then keeps `T`
    frames from a start drawn uniformly from {0, ..., 2 * pad} per sample.
    It shifts the clip; it does not resize it.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        ratio: int, padding is `T // ratio`. `ratio <= 0` disables the
            crop (official convention). Defaults to `6`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "temporal_crop")
    seed = _seed(seed)
    if ratio <= 0:
        return x
    frames = _dim(x, _T_AXIS)
    pad = frames // int(ratio)
    padded = tf.pad(
        x, [[0, 0], [0, 0], [pad, pad], [0, 0], [0, 0]], mode="SYMMETRIC"
    )
    start = tf.random.stateless_uniform(
        [_num_samples(x)], seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    index = start[:, None] + tf.range(frames)[None, :]
    return tf.gather(padded, index, axis=_T_AXIS, batch_dims=1)


def shear_matrices(seed, num_samples, r=0.5):
    """Per-sample shear matrices S = [[1,a12,a13],[a21,1,a23],[a31,a32,1]].

    The six values are U(-r, r), drawn as (a12, a21, a31, a13, a23, a32),
    the official order of its `s1` then `s2` lists.

    Args:
        seed: int32/int64 tensor of shape [2].
        num_samples: int or scalar int tensor N.
        r: float, shear amplitude. Defaults to `0.5`.

    Returns:
        float32 tensor of shape (N, 3, 3).
    """
    a = tf.random.stateless_uniform(
        [num_samples, 6], _seed(seed), minval=-r, maxval=r
    )
    a12, a21, a31, a13, a23, a32 = tf.unstack(a, num=6, axis=1)
    one = tf.ones_like(a12)
    rows = [
        tf.stack([one, a12, a13], axis=-1),
        tf.stack([a21, one, a23], axis=-1),
        tf.stack([a31, a32, one], axis=-1),
    ]
    return tf.stack(rows, axis=1)


def shear(x, seed, r=0.5, keep_joint=None):
    """Random shear x' = S x of every point (`shear`).

    Args:
        x: float32 tensor of shape (N, M, T, V, 3).
        seed: int32/int64 tensor of shape [2].
        r: float, amplitude of the six off-diagonal values U(-r, r).
            `r <= 0` disables the shear (official convention). Defaults to
            `0.5`.
        keep_joint: int or None. ActCLR's variant leaves this joint (its
            hard-coded index 20, the NTU center) unsheared. Defaults to
            `None` (AimCLR / SkeletonCLR: shear every joint).

    Returns:
        float32 tensor of shape (N, M, T, V, 3).
    """
    x = _batch(x, "shear", coords=True)
    if r <= 0:
        return x
    sheared = _apply_matrices(shear_matrices(seed, _num_samples(x), r), x)
    if keep_joint is None:
        return sheared
    kept = tf.equal(tf.range(_dim(x, _V_AXIS)), keep_joint)
    return tf.where(tf.reshape(kept, [1, 1, 1, -1, 1]), x, sheared)


def spatial_flip(x, seed, p=0.5, layout="ntu25"):
    """Left/right joint relabelling with probability p (`random_spatial_flip`).

    New joint `i` is old joint `flip_permutation[i]` of the layout;
    coordinates are not mirrored.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability. Defaults to `0.5`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "spatial_flip")
    permutation = _layout_for(x, layout).flip_permutation
    flipped = tf.gather(x, permutation, axis=_V_AXIS)
    return _where_samples(_coin(_seed(seed), _num_samples(x), p), flipped, x)


def _layout_for(x, layout):
    """The layout, checked against the joint axis of `x`."""
    layout = get_layout(layout)
    joints = x.shape[_V_AXIS]
    if joints is not None and joints != layout.num_joints:
        raise ValueError(
            f"Layout {layout.name!r} has {layout.num_joints} joints but the "
            f"batch has {joints}. Received: x.shape={x.shape}"
        )
    return layout


def _axis_rotation(angle, axis):
    """(N, 3, 3) official rotation matrices about `axis` (0=x, 1=y, 2=z)."""
    c, s = tf.cos(angle), tf.sin(angle)
    o, z = tf.ones_like(angle), tf.zeros_like(angle)
    rows = {
        0: [[o, z, z], [z, c, s], [z, -s, c]],
        1: [[c, z, -s], [z, o, z], [s, z, c]],
        2: [[c, s, z], [-s, c, z], [z, z, o]],
    }[axis]
    return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=1)


def rotation_matrices(seed, num_samples, main_degrees=30.0, other_degrees=1.0):
    """Per-sample rotations R = R_z R_y R_x of `random_rotate`.

    A main axis is drawn from {0, 1, 2} and rotated by U(0, main_degrees);
    the two other axes by U(0, other_degrees). Angles are positive only.
    The rotations are applied about x, then y, then z with the official
    matrices (FACTS §4.1), so the product is R_z R_y R_x.

    Args:
        seed: int32/int64 tensor of shape [2].
        num_samples: int or scalar int tensor N.
        main_degrees: float. Defaults to `30.0`.
        other_degrees: float. Defaults to `1.0`.

    Returns:
        float32 tensor of shape (N, 3, 3).
    """
    axis_seed, angle_seed = _split(seed, 2)
    main = tf.random.stateless_uniform(
        [num_samples], axis_seed, minval=0, maxval=3, dtype=tf.int32
    )
    is_main = tf.equal(tf.range(3)[None, :], main[:, None])
    degrees = tf.random.stateless_uniform([num_samples, 3], angle_seed)
    degrees *= tf.where(is_main, main_degrees, other_degrees)
    radians = degrees * (math.pi / 180.0)
    rx, ry, rz = (_axis_rotation(radians[:, a], a) for a in range(3))
    return rz @ ry @ rx


def rotate(x, seed):
    """Random rotation of every point (`random_rotate`).

    Always applied; see `rotation_matrices` for the angles.

    Args:
        x: float32 tensor of shape (N, M, T, V, 3).
        seed: int32/int64 tensor of shape [2].

    Returns:
        float32 tensor of shape (N, M, T, V, 3).
    """
    x = _batch(x, "rotate", coords=True)
    return _apply_matrices(rotation_matrices(seed, _num_samples(x)), x)


def gaussian_noise(x, seed, p=0.5, std=0.01):
    """Adds N(0, std) to every element with probability p (`gaus_noise`).

    Absent (all-zero) bodies get noise too, as in the official code.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability. Defaults to `0.5`.
        std: float, 0.01 (AimCLR, ActCLR "aug") or 0.05 (ActCLR strong).
            Defaults to `0.01`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "gaussian_noise")
    coin_seed, noise_seed = _split(seed, 2)
    noise = tf.random.stateless_normal(tf.shape(x), noise_seed, stddev=std)
    return _where_samples(_coin(coin_seed, _num_samples(x), p), x + noise, x)


def blur_matrices(sigma, num_frames, radius=7):
    """Banded (N, T, T) matrices of the official unnormalized Gaussian blur.

    `B[n, t, s] = exp(-(s - t)^2 / (2 sigma[n]^2))` for |s - t| <= radius,
    else 0. `B @ x` is the official depthwise convolution with zero padding
    of `radius` frames. The kernel is NOT normalized: its sum is about 2.51
    for sigma = 1 and 5.01 for sigma = 2.

    Args:
        sigma: float32 tensor of shape (N,).
        num_frames: int or scalar int tensor T.
        radius: int, half kernel length (official: 7, kernel 15).

    Returns:
        float32 tensor of shape (N, T, T).
    """
    frames = tf.range(num_frames)
    offset = frames[None, :] - frames[:, None]
    band = tf.abs(offset) <= radius
    sq = tf.cast(tf.square(offset), tf.float32)[None]
    sigma = tf.reshape(tf.cast(sigma, tf.float32), [-1, 1, 1])
    kernel = tf.exp(-sq / (2.0 * tf.square(sigma)))
    return tf.where(band[None], kernel, 0.0)


def gaussian_blur(x, seed, p=0.5, sigma_range=(0.1, 2.0), radius=7):
    """Temporal Gaussian blur with probability p (`gaus_filter`).

    sigma ~ U(sigma_range) per sample, then, with probability p, each
    (body, joint, coordinate) series is convolved along T with the
    unnormalized kernel of `blur_matrices` (zero padding), which also
    scales the amplitude by up to about 5. Output stays float32 (the
    official code returns float64 only by numpy promotion).

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability. Defaults to `0.5`.
        sigma_range: (low, high) floats, low > 0. Defaults to `(0.1, 2.0)`.
        radius: int, half kernel length. Defaults to `7`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "gaussian_blur")
    low, high = sigma_range
    if not 0 < low <= high:
        raise ValueError(
            "gaussian_blur needs 0 < low <= high. "
            f"Received: sigma_range={sigma_range}"
        )
    sigma_seed, coin_seed = _split(seed, 2)
    n = _num_samples(x)
    sigma = tf.random.stateless_uniform([n], sigma_seed, low, high)
    matrices = blur_matrices(sigma, _dim(x, _T_AXIS), radius)
    blurred = tf.einsum("nts,nmsvc->nmtvc", matrices, x)
    return _where_samples(_coin(coin_seed, n, p), blurred, x)


def axis_mask(x, seed, p=0.5):
    """Zeroes one random coordinate channel with probability p (`axis_mask`).

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability. Defaults to `0.5`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "axis_mask")
    coin_seed, axis_seed = _split(seed, 2)
    n = _num_samples(x)
    channels = _dim(x, -1)
    axis = tf.random.stateless_uniform(
        [n], axis_seed, minval=0, maxval=channels, dtype=tf.int32
    )
    zero = tf.equal(tf.range(channels)[None, :], axis[:, None])
    zero &= _coin(coin_seed, n, p)[:, None]
    return tf.where(tf.reshape(zero, [n, 1, 1, 1, channels]), 0.0, x)


def temporal_flip(x, seed, p=0.5):
    """Reverses time with probability p (`random_time_flip`).

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability. Defaults to `0.5`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "temporal_flip")
    reversed_x = tf.reverse(x, [_T_AXIS])
    return _where_samples(_coin(_seed(seed), _num_samples(x), p), reversed_x, x)


def dropout(x, seed, p=0.5):
    """Zeroes each element with probability p (ActCLR '7', unused there).

    Always applied (no per-sample coin), as in the official `dropout`.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-element drop probability. Defaults to `0.5`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "dropout")
    keep = tf.random.stateless_uniform(tf.shape(x), _seed(seed)) > p
    return tf.where(keep, x, 0.0)


def interpolate(x, seed, p=0.5, ratio=1.0):
    """Random linear temporal resize, kept at T frames (ActCLR '8').

    With probability 1 - p the sample is unchanged. Otherwise
    r ~ U(1/(ratio+1), ratio + 1/(ratio+1)) (U(0.5, 1.5) for ratio 1),
    L = max(1, floor(T r)), and the clip is linearly resized T -> L with
    half-pixel centers (cv2 INTER_LINEAR, torch `align_corners=False`).
    Frames >= L are zero when L < T; only the first T are kept when L > T.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        p: float, per-sample probability of resizing. Defaults to `0.5`.
        ratio: float, the official `interpolate_ratio`. Defaults to `1.0`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "interpolate")
    coin_seed, ratio_seed = _split(seed, 2)
    n = _num_samples(x)
    frames = _dim(x, _T_AXIS)
    frames_f = tf.cast(frames, tf.float32)
    r = tf.random.stateless_uniform([n], ratio_seed) * ratio
    r += 1.0 / (ratio + 1.0)
    length = tf.maximum(1, tf.cast(tf.floor(frames_f * r), tf.int32))
    scale = frames_f / tf.cast(length, tf.float32)
    t = tf.range(frames)
    source = (tf.cast(t, tf.float32)[None, :] + 0.5) * scale[:, None] - 0.5
    source = tf.maximum(source, 0.0)
    floor = tf.floor(source)
    weight = source - floor
    i0 = tf.minimum(tf.cast(floor, tf.int32), frames - 1)
    i1 = tf.minimum(i0 + 1, frames - 1)
    x0 = tf.gather(x, i0, axis=_T_AXIS, batch_dims=1)
    x1 = tf.gather(x, i1, axis=_T_AXIS, batch_dims=1)
    weight = tf.reshape(weight, [n, 1, frames, 1, 1])
    resized = x0 + weight * (x1 - x0)
    valid = tf.reshape(t[None, :] < length[:, None], [n, 1, frames, 1, 1])
    resized = tf.where(valid, resized, 0.0)
    return _where_samples(_coin(coin_seed, n, p), resized, x)


def root_first_bones(layout="ntu25"):
    """(child, parent) bones in breadth-first order from the center.

    The first pair is (center, center); every parent appears as a child
    before its own children. For NTU-25 this is the set of bones that
    ActCLR's `rescale` walks (FACTS §4.1), in a valid root-first order.

    Args:
        layout: layout name or `SkeletonLayout`.

    Returns:
        tuple of (child, parent) int pairs, one per joint.

    Raises:
        ValueError: if some joint is not connected to the center.
    """
    layout = get_layout(layout)
    neighbours = {v: set() for v in range(layout.num_joints)}
    for a, b in layout.edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    order = [(layout.center, layout.center)]
    seen = {layout.center}
    head = 0
    while head < len(order):
        joint = order[head][0]
        head += 1
        for child in sorted(neighbours[joint] - seen):
            seen.add(child)
            order.append((child, joint))
    if len(order) != layout.num_joints:
        missing = sorted(set(range(layout.num_joints)) - seen)
        raise ValueError(
            f"Layout {layout.name!r}: joints {missing} are not connected to "
            f"the center joint {layout.center}."
        )
    return tuple(order)


@functools.cache
def _rescale_operators(layout):
    """Constant matrices of the closed form of the root-first bone walk.

    The walk x'[c] = x'[parent(c)] + s_c (x[c] - x[parent(c)]) unrolls to
    x'[v] = x[center] + sum over bones b on the path center -> v of
    s_b (x[b] - x[parent(b)]), i.e. x' = (E + P diag(s) D) x with
    E[v, center] = 1, P[v, b] = 1 for b on that path, D the bone operator.
    """
    bones = root_first_bones(layout)
    parent = dict(bones)
    joints = layout.num_joints
    center = np.zeros((joints, joints), np.float32)
    center[:, layout.center] = 1.0
    bone = np.zeros((joints, joints), np.float32)
    path = np.zeros((joints, joints), np.float32)
    for child, par in bones[1:]:
        bone[child, child] += 1.0
        bone[child, par] -= 1.0
    for joint in range(joints):
        node = joint
        while node != layout.center:
            path[joint, node] = 1.0
            node = parent[node]
    return center, path, bone


def rescale(x, seed, scale=0.5, layout="ntu25"):
    """Shrinks every bone by a random factor in [0, scale] (ActCLR '9').

    Walks the bones root-first (`root_first_bones`) and sets
    x[child] = x_new[parent] + bone * scale * u with an independent
    u ~ U(0, 1) per bone and sample (shared by frames and bodies). Bones are
    measured on the input. The center joint is unchanged. Always applied.

    Args:
        x: float32 tensor of shape (N, M, T, V, C).
        seed: int32/int64 tensor of shape [2].
        scale: float, the official `scale_rate`. Defaults to `0.5`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.

    Returns:
        float32 tensor of shape (N, M, T, V, C).
    """
    x = _batch(x, "rescale")
    layout = _layout_for(x, layout)
    center, path, bone = _rescale_operators(layout)
    factors = scale * tf.random.stateless_uniform(
        [_num_samples(x), layout.num_joints], _seed(seed)
    )
    walk = center[None] + tf.einsum("vb,nb,bw->nvw", path, factors, bone)
    return tf.einsum("nvw,nmtwc->nmtvc", walk, x)

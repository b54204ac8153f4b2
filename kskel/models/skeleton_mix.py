"""ActCLR's batch-level Skeleton Mix and Skeleton AdaIN (FACTS §7.3).

`ske_swap` (Skeleton Mix) mixes every sample with a partner of the same
batch, `(n + shift) mod N`, by CutMix, ResizeMix or Mixup over a random
body-part / time-chunk region. `ske_trans` (Skeleton AdaIN) transfers the
partner's global statistics: bone lengths for the joint and bone streams,
per-joint mean and temporal deviation for the motion stream.

As in the official code every random choice (shift, parts, chunk, kind,
Mixup weight) is drawn once per batch, not per sample. Drawing
(`draw_shift`, `draw_mix_params`) is separate from applying, so the
applying functions are deterministic and testable. Everything is batched
`keras.ops` (any backend), runs inside `tf.function` and needs no static
batch size there.

Tensors are `(N, M, T, V, C)`. Masks live on the encoder's output grid
`(T', V)` with `T' = ceil(T / 4)` (two stride-2 temporal convolutions); a
grid cell covers 4 frames.

Reference: Lin et al., "Actionlet-Dependent Contrastive Learning for
Unsupervised Skeleton-Based Action Recognition", CVPR 2023, §3.2
(`net/actclr.py::ske_swap`, `ske_trans`).
"""

import collections
import functools

import keras
import numpy as np
from keras import ops

from kskel.data.augment import root_first_bones
from kskel.graph import get_layout

CUTMIX = 0
RESIZEMIX = 1
MIXUP = 2
# Frames per mask-grid cell: the encoder halves T twice.
CHUNK = 4
STREAM_MODES = ("joint", "motion", "bone")
TRANS_MODES = ("head", "v2023")

MixParams = collections.namedtuple(
    "MixParams", ["shift", "kind", "joints", "start", "chunks", "lam"]
)
MixParams.__doc__ = """One batch's Skeleton Mix draw (all scalars but `joints`).

Attributes:
    shift: int32, partner of sample n is `(n + shift) mod N`.
    kind: int32, `CUTMIX`, `RESIZEMIX` or `MIXUP`.
    joints: (V,) float32, 1 on the joints of the chosen body parts.
    start: int32, first grid cell of the region (frame `4 * start`).
    chunks: int32, region length in grid cells (`4 * chunks` frames).
    lam: float32, the Mixup weight of the partner.
"""


def grid_frames(num_frames):
    """T' = ceil(T / 4), the temporal size of the encoder's output."""
    return (num_frames + CHUNK - 1) // CHUNK


def partner_index(num_samples, shift):
    """`(n + shift) mod N` for n in [0, N), int32."""
    index = ops.arange(num_samples, dtype="int32") + ops.cast(shift, "int32")
    return ops.mod(index, ops.cast(num_samples, "int32"))


def _uniform_int(seed, low, high):
    """A scalar int32 uniform on [low, high] (both inclusive, tensors ok)."""
    u = keras.random.uniform((), seed=seed)
    span = ops.cast(high - low + 1, "float32")
    draw = ops.cast(ops.floor(u * span), "int32")
    return low + ops.minimum(draw, high - low)


def draw_shift(seed, num_samples):
    """A cyclic shift r uniform on [1, N - 2] (torch.randint(1, N - 1)).

    For N = 2 the shift is 1, so every sample still gets another partner.

    Args:
        seed: a `keras.random.SeedGenerator`.
        num_samples: int or scalar int32 tensor, N.
    """
    high = ops.maximum(ops.cast(num_samples, "int32") - 2, 1)
    return _uniform_int(seed, 1, high)


@functools.cache
def part_membership(layout):
    """(P, V) float32: row p is 1 on the joints of body part p."""
    layout = get_layout(layout)
    member = np.zeros((len(layout.body_parts), layout.num_joints), np.float32)
    for p, part in enumerate(layout.body_parts):
        member[p, list(part)] = 1.0
    return member


def draw_mix_params(seed, num_samples, num_frames, layout, epoch=None):
    """Draws one batch's Skeleton Mix region and kind.

    Ranges as official: before epoch 200 (or with `epoch=None`) 2-3 body
    parts and 3-5 grid cells, afterwards 1-2 parts and 1-3 cells. The cell
    count is clipped to T // 4 so the region fits short clips (no effect
    at T >= 20, e.g. the official T = 50). Kind: u > 0.5 CutMix,
    0.25 < u <= 0.5 ResizeMix, else Mixup.

    Args:
        seed: a `keras.random.SeedGenerator` (advanced by each draw).
        num_samples: int or scalar int32 tensor, N.
        num_frames: int, T (static).
        layout: layout name or `SkeletonLayout` (its `body_parts`).
        epoch: None, or an int / scalar tensor, the 1-based epoch.

    Returns:
        `MixParams`.
    """
    if num_frames < CHUNK:
        raise ValueError(
            f"Skeleton Mix needs at least {CHUNK} frames. "
            f"Received: num_frames={num_frames}"
        )
    if epoch is None:
        early = True
    else:
        early = ops.less(epoch, 200)
    parts_low = ops.cast(ops.where(early, 2, 1), "int32")
    cells_low = ops.cast(ops.where(early, 3, 1), "int32")
    num_parts = _uniform_int(seed, parts_low, parts_low + 1)
    membership = part_membership(layout)
    # The ranks of i.i.d. uniforms are a random permutation: keeping the
    # parts ranked below Cs samples Cs parts without replacement.
    order = ops.argsort(keras.random.uniform((len(membership),), seed=seed))
    rank = ops.argsort(order)
    chosen = ops.cast(rank < num_parts, "float32")
    joints = ops.minimum(ops.matmul(chosen, membership), 1.0)
    cells = num_frames // CHUNK
    chunks = ops.minimum(_uniform_int(seed, cells_low, cells_low + 2), cells)
    start = _uniform_int(seed, 0, cells - chunks)
    u = keras.random.uniform((), seed=seed)
    kind = ops.cast(
        ops.where(u > 0.5, CUTMIX, ops.where(u > 0.25, RESIZEMIX, MIXUP)),
        "int32",
    )
    return MixParams(
        shift=draw_shift(seed, num_samples),
        kind=kind,
        joints=joints,
        start=start,
        chunks=chunks,
        lam=keras.random.uniform((), seed=seed),
    )


def _interval(length, start, stop):
    """(length,) bool: start <= i < stop."""
    i = ops.arange(length, dtype="int32")
    return ops.logical_and(i >= start, i < stop)


def ske_swap(x, params):
    """Skeleton Mix of a batch with its shifted partners.

    - CutMix: the region (frames `[4 start, 4 (start + chunks))` x the
      chosen joints) is copied from the partner.
    - ResizeMix: the partner's first `2 * 4 chunks` frames, downsampled x2
      by nearest neighbour (even frames), are pasted into the region.
    - Mixup: `(1 - lam) x + lam x[partner]` everywhere.

    Args:
        x: float32 tensor (N, M, T, V, C), T static.
        params: `MixParams`.

    Returns:
        `(mixed, mask_p, mask_c)`: the mixed batch and two (T', V) float32
        grid masks. `mask_p` marks what comes from the partner and weighs
        the partner's key; `mask_c` marks what the sample lost (for
        ResizeMix `mask_p` covers the chosen joints at all cells, as
        official). For CutMix both are the region, for Mixup both are
        `lam` everywhere.
    """
    x = ops.convert_to_tensor(x, "float32")
    frames = x.shape[2]
    partner = ops.take(x, partner_index(ops.shape(x)[0], params.shift), axis=0)
    joints = params.joints > 0.5
    length = CHUNK * params.chunks
    first = CHUNK * params.start
    region = ops.logical_and(
        _interval(frames, first, first + length)[:, None], joints
    )
    region = region[None, None, :, :, None]

    cutmix = ops.where(region, partner, x)
    # torch 'nearest' from L = min(2 * length, T) frames to `length`
    # frames reads source frame floor(i * L / length).
    source_len = ops.minimum(2 * length, frames)
    offset = ops.maximum(ops.arange(frames, dtype="int32") - first, 0)
    source = ops.floor_divide(offset * source_len, length)
    resized = ops.take(partner, ops.minimum(source, frames - 1), axis=2)
    resizemix = ops.where(region, resized, x)
    mixup = (1.0 - params.lam) * x + params.lam * partner
    mixed = ops.where(
        params.kind == CUTMIX,
        cutmix,
        ops.where(params.kind == RESIZEMIX, resizemix, mixup),
    )

    cells = grid_frames(frames)
    in_cells = _interval(cells, params.start, params.start + params.chunks)
    grid_region = ops.cast(
        ops.logical_and(in_cells[:, None], joints), "float32"
    )
    grid_parts = ops.broadcast_to(
        ops.cast(joints, "float32"), grid_region.shape
    )
    lam = ops.full(grid_region.shape, params.lam, "float32")
    mask_c = ops.where(params.kind == MIXUP, lam, grid_region)
    mask_p = ops.where(
        params.kind == CUTMIX,
        grid_region,
        ops.where(params.kind == RESIZEMIX, grid_parts, lam),
    )
    return mixed, mask_p, mask_c


@functools.cache
def _bone_walk(layout):
    """Parents (V,) and path matrix P (V, V) of the root-first bone walk.

    The walk x'[c] = x'[parent(c)] + b'_c unrolls to
    x'[v] = x[center] + sum_b P[v, b] b'_b, P[v, b] = 1 for the bones b on
    the path center -> v (the center's own bone is excluded).
    """
    layout = get_layout(layout)
    parent = dict(root_first_bones(layout))
    path = np.zeros((layout.num_joints, layout.num_joints), np.float32)
    for joint in range(layout.num_joints):
        node = joint
        while node != layout.center:
            path[joint, node] = 1.0
            node = parent[node]
    parents = np.array([parent[v] for v in range(layout.num_joints)])
    return parents, path


def _length(v, axis):
    return ops.sqrt(ops.sum(ops.square(v), axis, keepdims=True) + 1e-5)


def _unbiased_std(x, axis):
    count = ops.cast(ops.shape(x)[axis], x.dtype)
    mean = ops.mean(x, axis, keepdims=True)
    var = ops.sum(ops.square(x - mean), axis, keepdims=True)
    return ops.sqrt(var / (count - 1.0))


def ske_trans(x, shift, stream, layout="ntu25", trans_mode="head", epoch=1):
    """Skeleton AdaIN: each sample takes statistics of its shifted partner.

    - joint: walks the bones root-first and rescales each bone b to the
      partner's length of the same bone, `x'[c] = x'[parent] + b * |b_p| /
      |b|`, with `|v| = sqrt(sum v^2 + 1e-5)` over xyz (`"head"`) or over
      the bodies M with the ratio raised to `100 / (epoch + 400)`
      (`"v2023"`, the code behind the reference checkpoint).
    - motion (paper Eq. 6): `(x - mean_V x) / (std_T x + 1e-3) * std_T x_p +
      mean_V x_p`, unbiased std.
    - bone: every bone vector keeps its direction and takes the partner's
      length (+1e-5 inside the square roots).

    Args:
        x: float32 tensor (N, M, T, V, C) of the `stream` input.
        shift: scalar int32, partner of n is `(n + shift) mod N`.
        stream: "joint", "motion" or "bone".
        layout: layout name or `SkeletonLayout` (joint stream).
        trans_mode: "head" or "v2023" (joint stream only).
        epoch: int or scalar tensor, 1-based epoch ("v2023" only).

    Returns:
        float32 tensor (N, M, T, V, C).
    """
    if stream not in STREAM_MODES:
        raise ValueError(
            f"stream must be one of {STREAM_MODES}. Received: stream={stream}"
        )
    if trans_mode not in TRANS_MODES:
        raise ValueError(
            f"trans_mode must be one of {TRANS_MODES}. "
            f"Received: trans_mode={trans_mode}"
        )
    x = ops.convert_to_tensor(x, "float32")
    partners = partner_index(ops.shape(x)[0], shift)
    partner = ops.take(x, partners, axis=0)
    if stream == "motion":
        centred = x - ops.mean(x, 3, keepdims=True)
        scale = _unbiased_std(partner, 2) / (_unbiased_std(x, 2) + 1e-3)
        return centred * scale + ops.mean(partner, 3, keepdims=True)
    if stream == "bone":
        return x / _length(x, -1) * _length(partner, -1)
    layout = get_layout(layout)
    parents, path = _bone_walk(layout)
    bones = x - ops.take(x, parents, axis=3)
    partner_bones = ops.take(bones, partners, axis=0)
    if trans_mode == "head":
        ratio = _length(partner_bones, -1) / _length(bones, -1)
    else:
        power = 100.0 / (ops.cast(epoch, "float32") + 400.0)
        ratio = (_length(partner_bones, 1) / _length(bones, 1)) ** power
    center = ops.take(x, [layout.center], axis=3)
    return center + ops.einsum("vb,nmtbc->nmtvc", path, bones * ratio)

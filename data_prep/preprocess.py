"""The official 50-frame preprocessing of raw skeleton sequences.

Reproduces `feeder/preprocess_ntu.py` with `NTUMotionProcessor(
data_type='relative', t_length=50, sampling='resize', y_rotation=True)` of the
AimCLR / ActCLR repositories (FACTS §3.2), quirks included, in plain numpy:

1. length = number of frames in which person 0, joint 0 is not all zero;
2. every joint is made relative to joint 21 (index 20), per frame and person;
3. the first `length` frames are resized to 50 with bilinear interpolation
   (half-pixel centres, edge clamp, no antialias: OpenCV `INTER_LINEAR`);
4. each person is rotated about the y axis so that its shoulder line lies
   on +x, with one rotation direction for the whole sequence.

Input and output use the project layout `(M, T, V, C)`: bodies, frames,
joints, xyz.
"""

import numpy as np

# Joint indices (0-based, NTU Kinect v2 order; FACTS §1).
LENGTH_JOINT = 0  # spine base: its presence defines the sequence length
CENTER_JOINT = 20  # spine shoulder
SHOULDER_A = 4  # joint 5, start of the shoulder vector
SHOULDER_B = 8  # joint 9, end of the shoulder vector

# Added to the shoulder vector's norm before the arccos (parallel_skeleton).
ROTATION_EPS = 1e-4
DEFAULT_NUM_FRAMES = 50


def sequence_length(raw):
    """Number of frames in which person 0's joint 0 is not all zero.

    This is the official `get_length`: a *count* of such frames, not the
    index of the last one. A sequence with an empty frame in the middle
    therefore gets a length shorter than its span, and step 3 of
    `preprocess_to_fixed_length` then drops its last real frames, exactly as
    the official code does.

    Args:
        raw: array `(M, T, V, C)`.

    Returns:
        int, the length in frames.
    """
    present = np.abs(raw[0, :, LENGTH_JOINT, :]).sum(axis=-1) != 0
    return int(present.sum())


def center_on_joint(x, joint=CENTER_JOINT):
    """Subtracts `joint` from every joint, per frame and per person.

    After this, `joint` is exactly 0 everywhere; an absent person (all zero)
    stays all zero.

    Args:
        x: array `(M, T, V, C)`.
        joint: int, 0-based index of the center joint. Defaults to 20.

    Returns:
        Array of the same shape and dtype.
    """
    return x - x[:, :, joint : joint + 1, :]


def resize_frames(x, num_frames):
    """Linearly resizes axis 0 of `x` to `num_frames` rows, like OpenCV.

    OpenCV `cv2.resize(..., interpolation=INTER_LINEAR)` along one axis,
    including its float32 arithmetic: output row `i` samples the source at
    `p = float32((i + 0.5) * T / num_frames - 0.5)` (half-pixel centres),
    blending rows `floor(p)` and `floor(p) + 1`, each clamped to
    `[0, T - 1]` (edge clamp), with weights `1 - frac(p)` and `frac(p)`;
    past an edge the edge row is copied exactly.
    Downsampling does not average (no antialias). This equals torch
    `interpolate(mode='linear', align_corners=False)` and TF
    `image.resize(method='bilinear', antialias=False)` up to float32
    rounding.

    Args:
        x: array `(T, ...)` with `T >= 1`.
        num_frames: int, output length.

    Returns:
        float32 array `(num_frames, ...)`.

    Raises:
        ValueError: if `x` has no rows.
    """
    src_len = x.shape[0]
    if src_len < 1:
        raise ValueError(
            f"cannot resize an empty sequence. Received: {x.shape=}"
        )
    # OpenCV: scale_y = 1 / inv_scale_y in double, the position in float.
    scale = 1.0 / (num_frames / src_len)
    pos = ((np.arange(num_frames) + 0.5) * scale - 0.5).astype(np.float32)
    base = np.floor(pos)
    lo = np.clip(base.astype(np.int64), 0, src_len - 1)
    hi = np.clip(base.astype(np.int64) + 1, 0, src_len - 1)
    # Past an edge both rows are the edge row: copy it exactly.
    frac = np.where(lo == hi, np.float32(0.0), pos - base)
    frac = frac.reshape((num_frames,) + (1,) * (x.ndim - 1))
    x = x.astype(np.float32)
    return x[lo] * (np.float32(1.0) - frac) + x[hi] * frac


def rotate_to_shoulder_axis(person):
    """Rotates one person about y so that its shoulder line lies on +x.

    The official `parallel_skeleton`: per frame t, v = joint9 - joint5
    with v_y set to 0, and theta_t = arccos(v_x / (|v| + 1e-4)). The sign
    of theta is chosen **once for the whole sequence**: theta <- -theta when
    sum_t v_z >= 0. Each frame is then multiplied by
    R_y(theta_t) = [[cos, 0, -sin], [0, 1, 0], [sin, 0, cos]] (column-vector
    xyz). Frames whose v_z sign disagrees with the sum are rotated the wrong
    way (their shoulder line ends up at twice the angle); this is kept.
    An all-zero person stays all zero.

    Args:
        person: array `(T, V, 3)`.

    Returns:
        float64 array `(T, V, 3)`.
    """
    person = person.astype(np.float64)
    vec = person[:, SHOULDER_B, :] - person[:, SHOULDER_A, :]
    vx, vz = vec[:, 0], vec[:, 2]
    norm = np.sqrt(vx * vx + vz * vz)
    theta = np.arccos(vx / (norm + ROTATION_EPS))
    if vz.sum() >= 0:
        theta = -theta
    cos = np.cos(theta)[:, None]
    sin = np.sin(theta)[:, None]
    x, y, z = person[..., 0], person[..., 1], person[..., 2]
    return np.stack([cos * x - sin * z, y, sin * x + cos * z], axis=-1)


def preprocess_to_fixed_length(raw, num_frames=DEFAULT_NUM_FRAMES):
    """Applies the official 50-frame preprocessing (FACTS §3.2) to a sample.

    Steps (each is the official behaviour, quirks kept):

    1. `length = sequence_length(raw)`, counted on the raw coordinates.
    2. Center on joint 21 (index 20) per frame and person.
    3. Resize frames `[0, length)` of each person to `num_frames` with
       `resize_frames` (bilinear, half-pixel centres, edge clamp). Frames at
       and after `length` are never used, even if they hold a body.
    4. Rotate each person with `rotate_to_shoulder_axis`.

    Short sequences: with `length == 1` every output frame is a copy of the
    (centred, rotated) first frame. With `length == 0` (person 0 never
    present) the official code fails inside OpenCV; here the result is all
    zeros, and callers that must reject such samples check
    `sequence_length(raw) == 0` first.

    Args:
        raw: array `(M, T, V, 3)`, zero where a body is absent; any float
            dtype.
        num_frames: int, output length. Defaults to 50.

    Returns:
        float32 array `(M, num_frames, V, 3)`.

    Raises:
        ValueError: if `raw` is not 4-D with 3 coordinates or `num_frames`
            is not positive.
    """
    if raw.ndim != 4 or raw.shape[-1] != 3:
        raise ValueError(f"expected (M, T, V, 3) input. Received: {raw.shape=}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1. Received: {num_frames=}")
    bodies, _, joints, coords = raw.shape
    out = np.zeros((bodies, num_frames, joints, coords), np.float32)
    length = sequence_length(raw)
    if length == 0:
        return out
    relative = center_on_joint(raw[:, :length].astype(np.float32))
    for m in range(bodies):
        resized = resize_frames(relative[m], num_frames)
        out[m] = rotate_to_shoulder_axis(resized)
    return out


def describe(num_frames=DEFAULT_NUM_FRAMES):
    """The manifest `preprocessing` entry for `preprocess_to_fixed_length`.

    Args:
        num_frames: int, output length. Defaults to 50.

    Returns:
        dict, JSON-able.
    """
    return {
        "frames": num_frames,
        "center_joint": CENTER_JOINT,
        "y_rotation": True,
        "sampling": "resize_linear_half_pixel",
        "length_rule": "frames where person 0 joint 0 is non-zero",
        "reference": "AimCLR feeder/preprocess_ntu.py (FACTS 3.2)",
    }

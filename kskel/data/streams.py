"""Joint, motion and bone input streams (FACTS §3.3).

The official code computes the streams on the GPU per view, after
augmentation, and also on linear-eval and finetune inputs. Here they are
batched TensorFlow ops on tensors whose last three axes are (T, V, C), so
they apply to a batch (N, M, T, V, C) as well as to one sample (M, T, V, C).
The output has the input's shape and dtype.
"""

import functools

import tensorflow as tf

from kskel.errors import KskelError
from kskel.graph import get_layout

STREAMS = ("joint", "motion", "bone")

_T_AXIS = -3
_V_AXIS = -2


def _skeleton(x):
    x = tf.convert_to_tensor(x, tf.float32)
    if x.shape.rank is not None and x.shape.rank < 3:
        raise ValueError(
            "A stream needs a tensor whose last axes are (T, V, C). "
            f"Received: x.shape={x.shape}"
        )
    return x


def joint_to_motion(x):
    """Motion stream: m[t] = x[t + 1] - x[t]; the last frame is 0.

    Args:
        x: float32 tensor of shape (..., T, V, C).

    Returns:
        float32 tensor of shape (..., T, V, C).
    """
    x = _skeleton(x)
    step = x[..., 1:, :, :] - x[..., :-1, :, :]
    return tf.concat([step, tf.zeros_like(x[..., :1, :, :])], axis=_T_AXIS)


def joint_to_bone(x, layout="ntu25"):
    """Bone stream: b[v] = x[v] - x[parent(v)]; the center's bone is 0.

    Parents come from the layout's `bone_pairs` (for NTU-25 the official
    list, with joint 21 (index 20) its own parent).

    Args:
        x: float32 tensor of shape (..., T, V, C).
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.

    Returns:
        float32 tensor of shape (..., T, V, C).
    """
    x = _skeleton(x)
    layout = get_layout(layout)
    joints = x.shape[_V_AXIS]
    if joints is not None and joints != layout.num_joints:
        raise ValueError(
            f"Layout {layout.name!r} has {layout.num_joints} joints but the "
            f"input has {joints}. Received: x.shape={x.shape}"
        )
    parents = [parent for _, parent in layout.bone_pairs]
    return x - tf.gather(x, parents, axis=_V_AXIS)


def to_stream(x, stream, layout="ntu25"):
    """Converts joint coordinates to the `stream` input.

    Args:
        x: float32 tensor of shape (..., T, V, C), joint coordinates.
        stream: one of `STREAMS`: "joint" (unchanged), "motion" or "bone".
        layout: layout name or `SkeletonLayout` (used by "bone").

    Returns:
        float32 tensor of shape (..., T, V, C).

    Raises:
        KskelError: if `stream` is unknown.
    """
    check_stream(stream)
    if stream == "motion":
        return joint_to_motion(x)
    if stream == "bone":
        return joint_to_bone(x, layout)
    return _skeleton(x)


def stream_fn(stream, layout="ntu25"):
    """`to_stream` bound to `stream` and `layout`: a pipeline `stream_fn`."""
    check_stream(stream)
    return functools.partial(to_stream, stream=stream, layout=layout)


def check_stream(stream):
    """Raises `KskelError` unless `stream` is one of `STREAMS`."""
    if stream not in STREAMS:
        raise KskelError(
            f"Unknown stream={stream!r}; use one of {', '.join(STREAMS)}."
        )

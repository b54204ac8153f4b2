"""Tests of the joint / motion / bone streams (FACTS §3.3)."""

import numpy as np
import pytest
import tensorflow as tf

from kskel.data import streams
from kskel.errors import KskelError

# FACTS §3.3, 1-based (joint, parent); joint 21 is its own parent.
BONES_1 = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
    (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
    (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21), (22, 23),
    (23, 8), (24, 25), (25, 12),
]  # fmt: skip


def _batch(n=3, m=2, t=6, v=25, c=3):
    rng = np.random.default_rng(1)
    return rng.normal(size=(n, m, t, v, c)).astype(np.float32)


def test_motion_is_the_forward_difference_with_a_zero_last_frame():
    x = _batch()
    m = streams.to_stream(x, "motion").numpy()
    assert m.shape == x.shape and m.dtype == np.float32
    np.testing.assert_array_equal(m[:, :, -1], 0.0)
    np.testing.assert_allclose(m[:, :, :-1], x[:, :, 1:] - x[:, :, :-1])
    # A single (M, T, V, C) sample works too.
    np.testing.assert_allclose(streams.joint_to_motion(x[0]).numpy(), m[0])


def test_bone_follows_the_official_pairs_and_joint_20_is_zero():
    x = _batch()
    b = streams.to_stream(x, "bone").numpy()
    np.testing.assert_array_equal(b[:, :, :, 20], 0.0)
    for joint, parent in BONES_1:
        np.testing.assert_allclose(
            b[:, :, :, joint - 1],
            x[:, :, :, joint - 1] - x[:, :, :, parent - 1],
        )
    np.testing.assert_allclose(streams.joint_to_bone(x[0]).numpy(), b[0])


def test_joint_stream_is_unchanged():
    x = _batch()
    np.testing.assert_array_equal(streams.to_stream(x, "joint").numpy(), x)


def test_streams_trace_with_unknown_batch():
    spec = tf.TensorSpec([None, 2, 6, 25, 3], tf.float32)
    x = _batch(n=4)
    for name in streams.STREAMS:
        fn = tf.function(
            lambda v, name=name: streams.to_stream(v, name),
            input_signature=[spec],
        )
        np.testing.assert_allclose(
            fn(x).numpy(), streams.to_stream(x, name).numpy()
        )


def test_unknown_stream_and_wrong_joint_count():
    with pytest.raises(KskelError, match="Unknown stream='velocity'"):
        streams.to_stream(_batch(), "velocity")
    with pytest.raises(ValueError, match="25 joints"):
        streams.to_stream(_batch(v=18), "bone")
    with pytest.raises(KskelError, match="Unknown joint layout"):
        streams.to_stream(_batch(), "bone", layout="nope")

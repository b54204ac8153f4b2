"""Tests for data_prep.preprocess: the official 50-frame preprocessing."""

import numpy as np
import pytest

from data_prep import preprocess


def _skeleton(rng, frames, bodies=2):
    """Random (M, T, 25, 3) float32 data with joint 0 never zero."""
    x = rng.normal(size=(bodies, frames, 25, 3)).astype(np.float32)
    x[:, :, 0, :] += 5.0
    return x


def test_sequence_length_counts_frames_with_person0_joint0():
    raw = np.zeros((2, 10, 25, 3), np.float32)
    raw[0, [0, 1, 2, 5], 0, 1] = 1.0  # a gap at frames 3-4
    raw[1, 7, 0, 0] = 1.0  # person 1 does not count
    raw[0, 8, 3, 0] = 1.0  # another joint of person 0 does not count
    assert preprocess.sequence_length(raw) == 4


def test_sequence_length_uses_absolute_values():
    raw = np.zeros((2, 3, 25, 3), np.float32)
    raw[0, 1, 0] = [1.0, -1.0, 0.0]  # sums to 0, but present
    assert preprocess.sequence_length(raw) == 1


def test_center_on_joint_makes_joint_20_zero(rng):
    x = _skeleton(rng, 7)
    out = preprocess.center_on_joint(x)
    assert np.all(out[:, :, 20, :] == 0.0)
    np.testing.assert_allclose(
        out[1, 3, 5], x[1, 3, 5] - x[1, 3, 20], rtol=0, atol=1e-6
    )


def test_resize_upsamples_a_ramp_with_half_pixel_centres():
    ramp = np.arange(4, dtype=np.float32)
    # out[i] samples (i + 0.5) / 2 - 0.5, clamped to [0, 3].
    expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]
    out = preprocess.resize_frames(ramp, 8)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_resize_downsamples_without_antialias():
    ramp = np.arange(100, dtype=np.float64) * 3.0
    # out[i] samples 2 i + 0.5: the mean of two neighbours, never wider.
    expected = (2 * np.arange(50) + 0.5) * 3.0
    np.testing.assert_allclose(
        preprocess.resize_frames(ramp, 50), expected, rtol=1e-6
    )


def test_resize_non_integer_ratio_by_hand():
    ramp = np.arange(3, dtype=np.float64)
    # 3 -> 5: positions (i + 0.5) * 0.6 - 0.5 = -0.2, 0.4, 1.0, 1.6, 2.2.
    expected = [0.0, 0.4, 1.0, 1.6, 2.0]
    np.testing.assert_allclose(
        preprocess.resize_frames(ramp, 5), expected, rtol=1e-6
    )


def test_resize_keeps_trailing_axes_independent(rng):
    x = rng.normal(size=(6, 25, 3))
    out = preprocess.resize_frames(x, 50)
    for v, c in [(0, 0), (20, 2), (7, 1)]:
        np.testing.assert_allclose(
            out[:, v, c], preprocess.resize_frames(x[:, v, c], 50)
        )


def test_resize_matches_tf_bilinear(rng):
    tf = pytest.importorskip("tensorflow")
    for length in (1, 17, 50, 123, 300):
        # Motion-like data: 1 cm steps, metres apart (FACTS: within 1e-5).
        steps = rng.normal(scale=0.01, size=(length, 25, 3))
        x = (np.cumsum(steps, axis=0) + rng.normal(size=(25, 3))).astype(
            np.float32
        )
        ours = preprocess.resize_frames(x, 50)
        theirs = tf.image.resize(
            x, (50, 25), method="bilinear", antialias=False
        ).numpy()
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_resize_of_one_frame_repeats_it(rng):
    x = rng.normal(size=(1, 25, 3)).astype(np.float32)
    out = preprocess.resize_frames(x, 50)
    np.testing.assert_array_equal(out, np.repeat(x, 50, axis=0))


def test_resize_rejects_empty():
    with pytest.raises(ValueError, match="empty"):
        preprocess.resize_frames(np.zeros((0, 25, 3)), 50)


def _person_with_shoulders(vectors):
    """(T, 25, 3) person whose joint 8 - joint 4 equals `vectors[t]`."""
    vectors = np.asarray(vectors, np.float64)
    person = np.zeros((len(vectors), 25, 3))
    person[:, 3] = [0.1, 0.5, 0.2]
    person[:, 4] = [-0.3, 0.4, 0.1]
    person[:, 8] = person[:, 4] + vectors
    return person


def test_rotation_puts_the_shoulder_line_on_plus_x(rng):
    # Frames whose v_z all agree in sign: every one ends on +x.
    for sign in (1.0, -1.0):
        angles = rng.uniform(0.2, 2.9, size=9)
        vectors = np.stack(
            [np.cos(angles), rng.normal(size=9), sign * np.sin(angles)], -1
        )
        out = preprocess.rotate_to_shoulder_axis(
            _person_with_shoulders(vectors)
        )
        shoulder = out[:, 8] - out[:, 4]
        flat = np.hypot(vectors[:, 0], vectors[:, 2])
        # The 1e-4 in arccos leaves a z of about sqrt(2e-4 / |v|) |v|.
        assert np.all(np.abs(shoulder[:, 2]) < 0.02 * flat)
        assert np.all(shoulder[:, 0] > 0.99 * flat)
        np.testing.assert_allclose(shoulder[:, 1], vectors[:, 1], atol=1e-12)


def test_rotation_keeps_lengths_and_y(rng):
    person = rng.normal(size=(5, 25, 3))
    out = preprocess.rotate_to_shoulder_axis(person)
    np.testing.assert_allclose(out[..., 1], person[..., 1])
    np.testing.assert_allclose(
        np.hypot(out[..., 0], out[..., 2]),
        np.hypot(person[..., 0], person[..., 2]),
    )


def test_rotation_of_aligned_shoulders_is_the_epsilon_angle():
    # v = (1, 0, 0): sum v_z = 0 >= 0, so theta = -arccos(1 / 1.0001).
    out = preprocess.rotate_to_shoulder_axis(
        _person_with_shoulders([[1, 0, 0]])
    )
    theta = -np.arccos(1.0 / (1.0 + 1e-4))
    shoulder = out[0, 8] - out[0, 4]
    np.testing.assert_allclose(
        shoulder, [np.cos(theta), 0.0, np.sin(theta)], atol=1e-12
    )
    assert shoulder[2] == pytest.approx(-0.0141418, abs=1e-6)


def test_rotation_uses_one_sign_per_sequence():
    # Two frames with v_z > 0, one with v_z < 0: sum > 0, so theta < 0 for
    # all, and the disagreeing frame turns to twice its angle (quirk).
    phi = 0.5
    vectors = [
        [np.cos(phi), 0, np.sin(phi)],
        [np.cos(phi), 0, np.sin(phi)],
        [np.cos(phi), 0, -np.sin(phi)],
    ]
    out = preprocess.rotate_to_shoulder_axis(_person_with_shoulders(vectors))
    shoulder = out[:, 8] - out[:, 4]
    theta = -np.arccos(np.cos(phi) / (1.0 + 1e-4))
    np.testing.assert_allclose(
        shoulder[2],
        [
            np.cos(theta) * np.cos(phi) + np.sin(theta) * np.sin(phi),
            0.0,
            np.sin(theta) * np.cos(phi) - np.cos(theta) * np.sin(phi),
        ],
        atol=1e-12,
    )
    assert shoulder[2, 2] == pytest.approx(-np.sin(2 * phi), abs=1e-3)
    assert np.all(np.abs(shoulder[:2, 2]) < 0.02)


def test_preprocess_output_shape_dtype_and_center(rng):
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[:, :73] = _skeleton(rng, 73)
    out = preprocess.preprocess_to_fixed_length(raw)
    assert out.shape == (2, 50, 25, 3)
    assert out.dtype == np.float32
    # Centering makes joint 20 zero and the rotation keeps the origin.
    assert np.all(out[:, :, 20, :] == 0.0)


def test_preprocess_equals_the_three_steps(rng):
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[:, :37] = _skeleton(rng, 37)
    out = preprocess.preprocess_to_fixed_length(raw)
    for m in range(2):
        centered = raw[m, :37] - raw[m, :37, 20:21]
        resized = preprocess.resize_frames(centered, 50)
        expected = preprocess.rotate_to_shoulder_axis(resized)
        np.testing.assert_allclose(out[m], expected, rtol=0, atol=1e-6)


def test_preprocess_keeps_an_absent_person_zero(rng):
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[0, :80] = _skeleton(rng, 80, bodies=1)[0]
    out = preprocess.preprocess_to_fixed_length(raw)
    assert np.all(out[1] == 0.0)
    assert np.any(out[0] != 0.0)


def test_preprocess_drops_frames_after_the_counted_length(rng):
    # Person 0 is absent at frame 2, so length = 3 of the 4 frames: frames
    # 0-2 are used (the empty one included) and frame 3 is never seen.
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[:, :4] = _skeleton(rng, 4)
    raw[0, 2] = 0.0
    changed = raw.copy()
    changed[:, 3] = 123.0
    np.testing.assert_array_equal(
        preprocess.preprocess_to_fixed_length(raw),
        preprocess.preprocess_to_fixed_length(changed),
    )


def test_preprocess_of_one_frame_repeats_it(rng):
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[:, 0] = _skeleton(rng, 1)[:, 0]
    out = preprocess.preprocess_to_fixed_length(raw)
    np.testing.assert_array_equal(out, np.repeat(out[:, :1], 50, axis=1))
    assert np.any(out != 0.0)


def test_preprocess_of_an_empty_sequence_is_zero():
    raw = np.zeros((2, 300, 25, 3), np.float32)
    raw[1, :10] = 1.0  # only person 1: length is still 0
    out = preprocess.preprocess_to_fixed_length(raw)
    assert out.shape == (2, 50, 25, 3)
    assert np.all(out == 0.0)


def test_preprocess_other_lengths(rng):
    raw = _skeleton(rng, 20)
    assert preprocess.preprocess_to_fixed_length(raw, 64).shape == (
        2,
        64,
        25,
        3,
    )


@pytest.mark.parametrize(
    "shape, frames", [((2, 10, 25), 50), ((2, 10, 25, 2), 50)]
)
def test_preprocess_rejects_bad_shapes(shape, frames):
    with pytest.raises(ValueError, match="M, T, V, 3"):
        preprocess.preprocess_to_fixed_length(np.zeros(shape), frames)


def test_preprocess_rejects_bad_frame_count():
    with pytest.raises(ValueError, match="num_frames"):
        preprocess.preprocess_to_fixed_length(np.zeros((2, 5, 25, 3)), 0)


def test_describe_names_what_was_done():
    entry = preprocess.describe()
    assert entry["frames"] == 50
    assert entry["center_joint"] == 20
    assert entry["y_rotation"] is True

"""Property tests of the batched, seeded augmentations (FACTS §4.1)."""

import numpy as np
import pytest
import tensorflow as tf

from kskel.data import augment
from kskel.graph import NTU25

SEED = tf.constant([3, 4], tf.int64)

# FACTS §4.1, 0-based: new joint i = old joint FLIP[i].
FLIP = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15]
FLIP += [20, 23, 24, 21, 22]

# FACTS §4.1, ActCLR `rescale`, 1-based (child, parent), root first.
RESCALE_BONES_1 = [
    (21, 21), (2, 21), (3, 21), (9, 21), (5, 21), (1, 2), (4, 3), (6, 5),
    (7, 6), (8, 7), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
    (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (23, 8), (22, 23),
    (25, 12), (24, 25),
]  # fmt: skip


def _batch(n=8, m=2, t=20, v=25, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, m, t, v, c)).astype(np.float32)


def _official_rotation(a, b, g):
    """R = R_z R_y R_x with the official matrices (angles in radians)."""
    ca, sa, cb, sb, cg, sg = (
        np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    )  # fmt: skip
    rx = np.array([[1, 0, 0], [0, ca, sa], [0, -sa, ca]])
    ry = np.array([[cb, 0, -sb], [0, 1, 0], [sb, 0, cb]])
    rz = np.array([[cg, sg, 0], [-sg, cg, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _fit_linear_map(x, y):
    """The 3x3 A with y = A x for every point of one sample."""
    points_x = x.reshape(-1, 3)
    points_y = y.reshape(-1, 3)
    solution, *_ = np.linalg.lstsq(points_x, points_y, rcond=None)
    return solution.T


def test_rotate_preserves_distances_and_bone_lengths():
    x = _batch()
    y = augment.rotate(x, SEED).numpy()
    assert y.dtype == np.float32 and y.shape == x.shape
    assert not np.allclose(x, y)
    dist = np.linalg.norm(x[..., :, None, :] - x[..., None, :, :], axis=-1)
    dist_y = np.linalg.norm(y[..., :, None, :] - y[..., None, :, :], axis=-1)
    np.testing.assert_allclose(dist_y, dist, atol=2e-5)
    for child, parent in NTU25.edges:
        np.testing.assert_allclose(
            np.linalg.norm(y[..., child, :] - y[..., parent, :], axis=-1),
            np.linalg.norm(x[..., child, :] - x[..., parent, :], axis=-1),
            atol=2e-5,
        )


def test_rotation_angles_recovered_from_output():
    x = _batch(n=64, t=6)
    y = augment.rotate(x, SEED).numpy()
    main_axes = []
    for n in range(len(x)):
        r = _fit_linear_map(x[n], y[n])
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-4)
        b = np.arcsin(r[2, 0])
        a = -np.arctan2(r[2, 1], r[2, 2])
        g = -np.arctan2(r[1, 0], r[0, 0])
        np.testing.assert_allclose(_official_rotation(a, b, g), r, atol=1e-4)
        degrees = np.degrees([a, b, g])
        assert np.all(degrees >= -1e-3) and np.all(degrees <= 30 + 1e-3)
        # The two non-main axes turn by at most 1 degree.
        assert np.sort(degrees)[1] <= 1 + 1e-3
        main_axes.append(int(np.argmax(degrees)))
    assert set(main_axes) == {0, 1, 2}


def test_spatial_flip_swaps_sides_and_is_an_involution():
    x = _batch()
    y = augment.spatial_flip(x, SEED, p=1.0).numpy()
    np.testing.assert_array_equal(y, x[:, :, :, FLIP])
    # Left shoulder (4) <-> right shoulder (8), hand tips 21 <-> 23.
    np.testing.assert_array_equal(y[:, :, :, 4], x[:, :, :, 8])
    np.testing.assert_array_equal(y[:, :, :, 23], x[:, :, :, 21])
    np.testing.assert_array_equal(y[:, :, :, 20], x[:, :, :, 20])
    twice = augment.spatial_flip(y, SEED, p=1.0).numpy()
    np.testing.assert_array_equal(twice, x)


def test_spatial_flip_is_sample_wise():
    x = _batch(n=64, t=2)
    y = augment.spatial_flip(x, SEED).numpy()
    flipped = np.all(y == x[:, :, :, FLIP], axis=(1, 2, 3, 4))
    unchanged = np.all(y == x, axis=(1, 2, 3, 4))
    assert np.all(flipped ^ unchanged)
    assert 0.25 < flipped.mean() < 0.75
    again = augment.spatial_flip(y, SEED).numpy()
    np.testing.assert_array_equal(again, x)


def test_axis_mask_zeroes_exactly_one_axis_of_masked_samples():
    x = _batch(n=64, t=4)
    y = augment.axis_mask(x, SEED).numpy()
    zero_axes = np.all(y == 0, axis=(1, 2, 3))  # (N, C)
    masked = zero_axes.sum(axis=1)
    assert set(masked) <= {0, 1}
    assert 0.25 < masked.mean() < 0.75
    assert set(np.argmax(zero_axes[masked == 1], axis=1)) == {0, 1, 2}
    kept = ~zero_axes[:, None, None, None, :] & np.ones_like(x, bool)
    np.testing.assert_array_equal(y[kept], x[kept])


def test_temporal_crop_is_a_window_of_the_symmetric_padding():
    frames, pad = 24, 4  # pad = 24 // 6
    x = _batch(n=32, t=frames)
    y = augment.temporal_crop(x, SEED).numpy()
    assert y.shape == x.shape
    starts = []
    for n in range(len(x)):
        padded = np.pad(
            x[n], ((0, 0), (pad, pad), (0, 0), (0, 0)), mode="symmetric"
        )
        # numpy 'symmetric': x3 x2 x1 x0 | x0 ... x23 | x23 x22 x21 x20.
        np.testing.assert_array_equal(padded[:, :pad], x[n, :, 3::-1])
        hits = [
            s
            for s in range(2 * pad + 1)
            if np.array_equal(y[n], padded[:, s : s + frames])
        ]
        assert hits, f"sample {n} is not a window of the padded clip"
        starts.append(hits[0])
    assert len(set(starts)) >= 4
    disabled = augment.temporal_crop(x, SEED, ratio=-1).numpy()
    np.testing.assert_array_equal(disabled, x)


def test_shear_matches_the_official_numpy_formula():
    x = _batch()
    matrices = augment.shear_matrices(SEED, len(x)).numpy()
    np.testing.assert_array_equal(matrices[:, [0, 1, 2], [0, 1, 2]], 1.0)
    off = matrices[:, ~np.eye(3, dtype=bool)]
    assert np.all(np.abs(off) < 0.5) and np.std(off) > 0.1
    y = augment.shear(x, SEED).numpy()
    for n in range(len(x)):
        # Official: data (C,T,V,M); np.dot(data.transpose(1,2,3,0), R.T).
        data = x[n].transpose(3, 1, 2, 0).astype(np.float64)
        ref = np.dot(data.transpose([1, 2, 3, 0]), matrices[n].T)
        ref = ref.transpose(3, 0, 1, 2).transpose(3, 1, 2, 0)
        np.testing.assert_allclose(y[n], ref, atol=1e-5)


def test_shear_can_keep_the_center_joint():
    x = _batch()
    plain = augment.shear(x, SEED).numpy()
    kept = augment.shear(x, SEED, keep_joint=20).numpy()
    np.testing.assert_array_equal(kept[:, :, :, 20], x[:, :, :, 20])
    others = np.arange(25) != 20
    np.testing.assert_array_equal(kept[:, :, :, others], plain[:, :, :, others])
    np.testing.assert_array_equal(augment.shear(x, SEED, r=0).numpy(), x)


def _numpy_blur(x, sigma, radius=7):
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-(t**2) / (2.0 * sigma**2))
    return np.apply_along_axis(
        lambda s: np.convolve(s, kernel, mode="same"), 2, x.astype(np.float64)
    )


def test_gaussian_blur_with_fixed_sigma_matches_numpy_convolution():
    x = _batch(n=4, t=30)
    y = augment.gaussian_blur(x, SEED, p=1.0, sigma_range=(1.0, 1.0)).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, _numpy_blur(x, 1.0), atol=1e-5)
    constant = np.ones((2, 1, 30, 25, 3), np.float32)
    blurred = augment.gaussian_blur(
        constant, SEED, p=1.0, sigma_range=(1.0, 1.0)
    ).numpy()
    # Unnormalized kernel: sqrt(2 pi) = 2.5066 away from the zero padding.
    np.testing.assert_allclose(blurred[:, :, 7:23], np.sqrt(2 * np.pi), 1e-5)
    assert blurred[0, 0, 0, 0, 0] < blurred[0, 0, 7, 0, 0]


def test_gaussian_blur_default_sigma_range_and_probability():
    constant = np.ones((64, 1, 30, 2, 3), np.float32)
    y = augment.gaussian_blur(constant, SEED).numpy()
    interior = y[:, 0, 15, 0, 0]
    blurred = interior != 1.0
    assert 0.25 < blurred.mean() < 0.75
    # Kernel sums: 1.0 at sigma=0.1 up to 5.01 at sigma=2.
    assert np.all(interior[blurred] > 1.0) and np.all(interior < 5.02)
    np.testing.assert_array_equal(y[~blurred], constant[~blurred])


def test_gaussian_noise_std_and_absent_bodies():
    x = _batch(n=32, t=20)
    x[:, 1] = 0.0  # absent second body
    for std in (0.01, 0.05):
        y = augment.gaussian_noise(x, SEED, p=1.0, std=std).numpy()
        noise = y - x
        assert abs(noise.std() - std) < 0.03 * std
        assert abs(noise.mean()) < 0.01 * std
        assert np.all(y[:, 1] != 0.0)
    y = augment.gaussian_noise(x, SEED).numpy()
    changed = np.any(y != x, axis=(1, 2, 3, 4))
    assert 0.2 < changed.mean() < 0.8
    np.testing.assert_array_equal(y[~changed], x[~changed])


def test_temporal_flip_is_sample_wise_reversal():
    x = _batch(n=64, t=5)
    y = augment.temporal_flip(x, SEED).numpy()
    flipped = np.all(y == x[:, :, ::-1], axis=(1, 2, 3, 4))
    unchanged = np.all(y == x, axis=(1, 2, 3, 4))
    assert np.all(flipped ^ unchanged)
    assert 0.25 < flipped.mean() < 0.75


def test_dropout_zeroes_about_half_of_the_elements():
    x = _batch(n=8, t=10)
    y = augment.dropout(x, SEED).numpy()
    dropped = y == 0
    assert 0.45 < dropped.mean() < 0.55
    np.testing.assert_array_equal(y[~dropped], x[~dropped])


def _numpy_resize(x, length):
    """Linear T -> length resize with half-pixel centers (cv2 / torch)."""
    frames = x.shape[1]
    scale = frames / length
    out = np.zeros_like(x)
    for t in range(min(length, frames)):
        src = max((t + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), frames - 1)
        i1 = min(i0 + 1, frames - 1)
        w = src - np.floor(src)
        out[:, t] = (1 - w) * x[:, i0] + w * x[:, i1]
    return out


def test_interpolate_matches_a_linear_resize_and_zeroes_the_tail():
    frames = 20
    x = _batch(n=24, t=frames)
    y = augment.interpolate(x, SEED, p=1.0).numpy()
    assert y.shape == x.shape
    lengths = []
    for n in range(len(x)):
        matches = [
            length
            for length in range(frames // 2, frames * 3 // 2 + 1)
            if np.allclose(y[n], _numpy_resize(x[n], length), atol=1e-5)
        ]
        assert matches, f"sample {n} is not a linear resize"
        length = matches[0]
        lengths.append(length)
        if length < frames:
            np.testing.assert_array_equal(y[n, :, length:], 0.0)
    assert min(lengths) < frames < max(lengths)


def test_interpolate_is_skipped_with_probability_one_half():
    x = _batch(n=64, t=20)
    y = augment.interpolate(x, SEED).numpy()
    unchanged = np.all(y == x, axis=(1, 2, 3, 4))
    assert 0.25 < unchanged.mean() < 0.75


def test_root_first_bones_equal_the_official_walk():
    bones = augment.root_first_bones("ntu25")
    official = {(c - 1, p - 1) for c, p in RESCALE_BONES_1}
    assert set(bones) == official and len(bones) == 25
    assert bones[0] == (20, 20)
    seen = {20}
    for child, parent in bones[1:]:
        assert parent in seen
        seen.add(child)


def test_rescale_keeps_the_center_and_shrinks_every_bone():
    x = _batch(n=16, t=6)
    y = augment.rescale(x, SEED).numpy()
    np.testing.assert_array_equal(y[:, :, :, 20], x[:, :, :, 20])
    ratios = []
    for child, parent in augment.root_first_bones("ntu25")[1:]:
        old = x[:, :, :, child] - x[:, :, :, parent]
        new = y[:, :, :, child] - y[:, :, :, parent]
        # One factor per (sample, bone), shared by bodies and frames.
        ratio = np.sum(new * old, axis=(1, 2, 3)) / np.sum(
            old * old, axis=(1, 2, 3)
        )
        np.testing.assert_allclose(
            new, ratio[:, None, None, None] * old, atol=1e-5
        )
        assert np.all(ratio >= -1e-6) and np.all(ratio <= 0.5 + 1e-6)
        ratios.append(ratio)
    ratios = np.array(ratios)
    assert ratios.max() > 0.4 and ratios.min() < 0.1


def test_rescale_works_for_another_layout():
    x = _batch(n=2, t=3, v=18)
    y = augment.rescale(x, SEED, layout="openpose18").numpy()
    np.testing.assert_array_equal(y[:, :, :, 1], x[:, :, :, 1])
    assert not np.allclose(y, x)


ALL_OPS = [
    augment.temporal_crop,
    augment.shear,
    augment.spatial_flip,
    augment.rotate,
    augment.gaussian_noise,
    augment.gaussian_blur,
    augment.axis_mask,
    augment.temporal_flip,
    augment.dropout,
    augment.interpolate,
    augment.rescale,
]


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.__name__)
def test_ops_are_seeded_and_trace_with_unknown_batch(op):
    x = _batch(n=5, t=12)
    first = op(x, SEED).numpy()
    np.testing.assert_array_equal(op(x, SEED).numpy(), first)
    int32_seed = tf.constant([3, 4], tf.int32)
    assert op(x, int32_seed).shape == x.shape
    other = op(x, tf.constant([5, 6], tf.int64)).numpy()
    assert not np.array_equal(first, other)

    spec = tf.TensorSpec([None, 2, 12, 25, 3], tf.float32)
    traced = tf.function(
        op, input_signature=[spec, tf.TensorSpec([2], tf.int64)]
    )
    for n in (3, 5):
        out = traced(x[:n], SEED)
        assert out.dtype == tf.float32 and out.shape == (n, 2, 12, 25, 3)
    np.testing.assert_allclose(traced(x, SEED).numpy(), first, atol=1e-6)
    assert traced.experimental_get_tracing_count() == 1


def test_bad_inputs_raise_value_error():
    x = _batch(n=2, t=4)
    with pytest.raises(ValueError, match="N, M, T, V, C"):
        augment.rotate(x[0], SEED)
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        augment.rotate(x, tf.constant([1, 2, 3]))
    with pytest.raises(ValueError, match="int32 or int64"):
        augment.rotate(x, tf.constant([1.0, 2.0]))
    with pytest.raises(ValueError, match="xyz"):
        augment.shear(x[..., :2], SEED)
    with pytest.raises(ValueError, match="25 joints"):
        augment.spatial_flip(x[:, :, :, :18], SEED)
    with pytest.raises(ValueError, match="sigma_range"):
        augment.gaussian_blur(x, SEED, sigma_range=(0.0, 1.0))

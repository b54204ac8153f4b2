"""Skeleton Mix (CutMix / ResizeMix / Mixup) and Skeleton AdaIN of ActCLR."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.graph import NTU25
from kskel.models import skeleton_mix
from kskel.models.skeleton_mix import CUTMIX
from kskel.models.skeleton_mix import MIXUP
from kskel.models.skeleton_mix import RESIZEMIX
from kskel.models.skeleton_mix import MixParams

# The official root-first bone walk of `ske_trans` (1-based, FACTS §4.1).
OFFICIAL_WALK = (
    (21, 21), (2, 21), (3, 21), (9, 21), (5, 21), (1, 2), (4, 3), (6, 5),
    (7, 6), (8, 7), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13),
    (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (23, 8),
    (22, 23), (25, 12), (24, 25),
)  # fmt: skip


def _batch(rng, n=4, frames=16):
    return rng.normal(size=(n, 2, frames, 25, 3)).astype("float32")


def _params(kind, shift=1, parts=(1, 3), start=1, chunks=2, lam=0.3):
    joints = np.zeros(25, "float32")
    for p in parts:
        joints[list(NTU25.body_parts[p])] = 1.0
    return MixParams(
        shift=tf.constant(shift),
        kind=tf.constant(kind),
        joints=tf.constant(joints),
        start=tf.constant(start),
        chunks=tf.constant(chunks),
        lam=tf.constant(lam),
    )


def _region(frames, joints, start, chunks):
    region = np.zeros((frames, 25), bool)
    region[4 * start : 4 * (start + chunks)] = joints > 0
    return region


def test_shift_is_a_nontrivial_cyclic_partner():
    seed = keras.random.SeedGenerator(3)
    shifts = {int(skeleton_mix.draw_shift(seed, 6)) for _ in range(60)}
    assert shifts == {1, 2, 3, 4}  # torch.randint(1, N - 1)
    assert int(skeleton_mix.draw_shift(seed, 2)) == 1
    np.testing.assert_array_equal(
        skeleton_mix.partner_index(5, tf.constant(2)), [2, 3, 4, 0, 1]
    )


@pytest.mark.parametrize("epoch", [None, 250])
def test_draw_ranges(epoch):
    seed = keras.random.SeedGenerator(0)
    parts = []
    chunks = []
    kinds = []
    for _ in range(80):
        p = skeleton_mix.draw_mix_params(seed, 8, 50, "ntu25", epoch)
        joints = np.asarray(p.joints)
        chosen = [joints[list(part)].max() for part in NTU25.body_parts]
        # A union of whole body parts.
        for part, on in zip(NTU25.body_parts, chosen):
            assert joints[list(part)].min() == on
        parts.append(int(sum(chosen)))
        chunks.append(int(p.chunks))
        assert 0 <= int(p.start) <= 12 - int(p.chunks)
        kinds.append(int(p.kind))
        assert 0.0 <= float(p.lam) < 1.0
    if epoch is None:
        assert set(parts) == {2, 3} and set(chunks) == {3, 4, 5}
    else:
        assert set(parts) == {1, 2} and set(chunks) == {1, 2, 3}
    assert set(kinds) == {CUTMIX, RESIZEMIX, MIXUP}
    # u > 0.5 is CutMix: about half of the draws.
    assert 0.3 < kinds.count(CUTMIX) / len(kinds) < 0.7


def test_draw_clips_chunks_for_short_clips_and_runs_in_a_graph():
    seed = keras.random.SeedGenerator(1)

    @tf.function
    def draw():
        p = skeleton_mix.draw_mix_params(seed, tf.constant(4), 12, "ntu25")
        return p.chunks, p.start, p.lam

    draws = [draw() for _ in range(10)]
    assert all(int(c) == 3 and int(s) == 0 for c, s, _ in draws)
    assert len({float(lam) for _, _, lam in draws}) == 10  # state advances


def test_cutmix_copies_the_partner_region(rng):
    x = _batch(rng)
    params = _params(CUTMIX, shift=1, start=1, chunks=2)
    mixed, mask_p, mask_c = skeleton_mix.ske_swap(x, params)
    mixed = np.asarray(mixed)
    region = _region(16, np.asarray(params.joints), 1, 2)
    partner = np.roll(x, -1, axis=0)  # sample n takes sample n + 1
    np.testing.assert_array_equal(mixed[:, :, region], partner[:, :, region])
    np.testing.assert_array_equal(mixed[:, :, ~region], x[:, :, ~region])
    grid = np.zeros((4, 25), "float32")
    grid[1:3] = np.asarray(params.joints)
    np.testing.assert_array_equal(mask_p, grid)
    np.testing.assert_array_equal(mask_c, grid)


def test_resizemix_pastes_the_half_speed_partner(rng):
    x = _batch(rng, frames=50)
    params = _params(RESIZEMIX, shift=2, parts=(0,), start=2, chunks=3)
    mixed, mask_p, mask_c = skeleton_mix.ske_swap(x, params)
    mixed = np.asarray(mixed)
    joints = np.asarray(params.joints) > 0
    partner = np.roll(x, -2, axis=0)
    # Frames 8..19 receive the partner's even frames 0, 2, ..., 22.
    for i, t in enumerate(range(8, 20)):
        np.testing.assert_array_equal(
            mixed[:, :, t, joints], partner[:, :, 2 * i, joints]
        )
    region = _region(50, joints, 2, 3)
    np.testing.assert_array_equal(mixed[:, :, ~region], x[:, :, ~region])
    grid_c = np.zeros((13, 25), "float32")
    grid_c[2:5] = joints
    np.testing.assert_array_equal(mask_c, grid_c)
    # mask_p covers the pasted joints at every cell (official).
    np.testing.assert_array_equal(mask_p, np.tile(joints, (13, 1)))


def test_mixup_is_a_convex_combination(rng):
    x = _batch(rng)
    params = _params(MIXUP, shift=3, lam=0.3)
    mixed, mask_p, mask_c = skeleton_mix.ske_swap(x, params)
    expected = 0.7 * x + 0.3 * np.roll(x, -3, axis=0)
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mask_p, np.full((4, 25), 0.3))
    np.testing.assert_allclose(mask_c, np.full((4, 25), 0.3))


def _unbiased_std(x, axis):
    return x.std(axis=axis, ddof=1, keepdims=True)


def test_motion_adain_is_paper_eq6(rng):
    x = _batch(rng, frames=12)
    out = np.asarray(skeleton_mix.ske_trans(x, tf.constant(1), "motion"))
    y = np.roll(x, -1, axis=0)
    expected = (x - x.mean(3, keepdims=True)) / (
        _unbiased_std(x, 2) + 1e-3
    ) * _unbiased_std(y, 2) + y.mean(3, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # With joint-centred frames on both sides the output takes the
    # partner's per-joint temporal deviation.
    centred = x - x.mean(3, keepdims=True)
    out = np.asarray(skeleton_mix.ske_trans(centred, tf.constant(1), "motion"))
    partner = np.roll(centred, -1, axis=0)
    np.testing.assert_allclose(
        _unbiased_std(out, 2), _unbiased_std(partner, 2), rtol=1e-2
    )


def _length(v):
    return np.sqrt((v**2).sum(-1, keepdims=True))


def test_bone_adain_keeps_directions_and_takes_partner_lengths(rng):
    x = _batch(rng, frames=6)
    out = np.asarray(skeleton_mix.ske_trans(x, tf.constant(2), "bone"))
    partner = np.roll(x, -2, axis=0)
    expected = (
        x
        / np.sqrt(_length(x) ** 2 + 1e-5)
        * np.sqrt(_length(partner) ** 2 + 1e-5)
    )
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        out / _length(out), x / _length(x), rtol=1e-4, atol=1e-5
    )
    # Up to the 1e-5 inside the square roots.
    np.testing.assert_allclose(_length(out), _length(partner), rtol=2e-3)


def _official_joint_trans(x, shift, over_bodies=False, epoch=1):
    """The official loop of `ske_trans(mode='joint')` in numpy."""
    x = x.copy()
    bones = x.copy()
    for v1, v2 in OFFICIAL_WALK:
        bones[..., v1 - 1, :] = x[..., v1 - 1, :] - x[..., v2 - 1, :]
    partner = np.roll(bones, -shift, axis=0)
    axis = 1 if over_bodies else -1
    for v1, v2 in OFFICIAL_WALK:
        b, bp = bones[..., v1 - 1, :], partner[..., v1 - 1, :]
        ratio = np.sqrt((bp**2).sum(axis, keepdims=True) + 1e-5) / np.sqrt(
            (b**2).sum(axis, keepdims=True) + 1e-5
        )
        if over_bodies:
            ratio = ratio ** (100.0 / (epoch + 400.0))
        x[..., v1 - 1, :] = x[..., v2 - 1, :] + b * ratio
    return x


def test_joint_adain_head_matches_the_official_walk(rng):
    x = _batch(rng, frames=5)
    out = np.asarray(skeleton_mix.ske_trans(x, tf.constant(1), "joint"))
    np.testing.assert_allclose(
        out, _official_joint_trans(x, 1), rtol=1e-4, atol=1e-4
    )
    # Bone directions are kept, lengths are the partner's.
    parents = [p for _, p in NTU25.bone_pairs]
    bones = x - x[:, :, :, parents]
    new_bones = out - out[:, :, :, parents]
    partner = np.roll(bones, -1, axis=0)
    moving = np.arange(25) != NTU25.center
    np.testing.assert_allclose(
        new_bones[..., moving, :] / _length(new_bones[..., moving, :]),
        bones[..., moving, :] / _length(bones[..., moving, :]),
        atol=1e-4,
    )
    np.testing.assert_allclose(
        _length(new_bones[..., moving, :]),
        _length(partner[..., moving, :]),
        rtol=1e-3,
        atol=1e-4,
    )
    np.testing.assert_array_equal(
        out[..., NTU25.center, :], x[..., NTU25.center, :]
    )


def test_joint_adain_v2023_norms_over_bodies_with_epoch_power(rng):
    x = _batch(rng, frames=5)
    out = skeleton_mix.ske_trans(
        x, tf.constant(3), "joint", trans_mode="v2023", epoch=100
    )
    np.testing.assert_allclose(
        out,
        _official_joint_trans(x, 3, over_bodies=True, epoch=100),
        rtol=1e-4,
        atol=1e-4,
    )


def test_invalid_modes_raise():
    x = np.zeros((2, 2, 4, 25, 3), "float32")
    with pytest.raises(ValueError, match="stream"):
        skeleton_mix.ske_trans(x, tf.constant(1), "velocity")
    with pytest.raises(ValueError, match="trans_mode"):
        skeleton_mix.ske_trans(x, tf.constant(1), "joint", trans_mode="x")
    with pytest.raises(ValueError, match="frames"):
        skeleton_mix.draw_mix_params(
            keras.random.SeedGenerator(0), 2, 3, "ntu25"
        )

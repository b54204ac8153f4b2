"""Tests of the SkeletonCLR / AimCLR / ActCLR view recipes (FACTS §4.2)."""

import numpy as np
import pytest
import tensorflow as tf

from kskel.data import views
from kskel.data.streams import joint_to_bone
from kskel.data.streams import joint_to_motion
from kskel.errors import KskelError

SEED = tf.constant([11, 12], tf.int64)
OTHER_SEED = tf.constant([11, 13], tf.int64)
FRAMES = 12
PAD = FRAMES // 6
METHODS = sorted(views.NUM_VIEWS)


def _batch(n=4, t=FRAMES, seed=2):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2, t, 25, 3)).astype(np.float32)


def _numpy(outputs):
    return [v.numpy() for v in outputs]


def _is_crop_shear(view, x, keep_center=False):
    """True if each sample is S @ (a symmetric-padded window of x)."""
    for n in range(len(x)):
        padded = np.pad(
            x[n], ((0, 0), (PAD, PAD), (0, 0), (0, 0)), mode="symmetric"
        )
        found = False
        for start in range(2 * PAD + 1):
            window = padded[:, start : start + FRAMES]
            joints = np.arange(25) != 20 if keep_center else slice(None)
            src = window[:, :, joints].reshape(-1, 3)
            dst = view[n][:, :, joints].reshape(-1, 3)
            sol, *_ = np.linalg.lstsq(src, dst, rcond=None)
            if np.allclose(src @ sol, dst, atol=1e-4):
                np.testing.assert_allclose(np.diag(sol), 1.0, atol=1e-4)
                if keep_center:
                    np.testing.assert_array_equal(
                        view[n][:, :, 20], window[:, :, 20]
                    )
                found = True
                break
        if not found:
            return False
    return True


@pytest.mark.parametrize("method", METHODS)
def test_recipes_are_deterministic_and_seed_dependent(method):
    x = _batch()
    views_fn = views.get_views_fn(method)
    first = _numpy(views_fn(x, SEED))
    assert len(first) == views.NUM_VIEWS[method]
    for view in first:
        assert view.shape == x.shape and view.dtype == np.float32
    again = _numpy(views_fn(x, SEED))
    other = _numpy(views_fn(x, OTHER_SEED))
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stream", ["joint", "bone"])
def test_recipes_trace_inside_tf_data(method, stream):
    x = _batch(n=8)
    views_fn = views.get_views_fn(method, stream=stream)
    base = tf.constant(5, tf.int64)
    dataset = (
        tf.data.Dataset.from_tensor_slices(x)
        .batch(4)
        .enumerate()
        .map(lambda i, batch: views_fn(batch, tf.stack([base, i])))
    )
    batches = list(dataset)
    assert len(batches) == 2
    for i, batch_views in enumerate(batches):
        eager = views_fn(x[4 * i : 4 * i + 4], tf.constant([5, i], tf.int64))
        for from_data, from_eager in zip(batch_views, eager):
            assert from_data.shape == (4, 2, FRAMES, 25, 3)
            np.testing.assert_allclose(
                from_data.numpy(), from_eager.numpy(), atol=1e-5
            )


@pytest.mark.parametrize("method", METHODS)
def test_recipes_trace_once_for_any_batch_size(method):
    views_fn = views.get_views_fn(method, stream="motion")
    traced = tf.function(
        views_fn,
        input_signature=[
            tf.TensorSpec([None, 2, FRAMES, 25, 3], tf.float32),
            tf.TensorSpec([2], tf.int64),
        ],
    )
    for n in (3, 5):
        outputs = traced(_batch(n=n), SEED)
        assert all(v.shape == (n, 2, FRAMES, 25, 3) for v in outputs)
    assert traced.experimental_get_tracing_count() == 1


def test_skeletonclr_views_are_two_different_crop_shears():
    x = _batch()
    query, key = _numpy(views.skeletonclr_views(x, SEED))
    assert not np.allclose(query, key)
    assert _is_crop_shear(query, x) and _is_crop_shear(key, x)


def test_aimclr_normal_views_are_crop_shear_and_extreme_is_more():
    x = _batch()
    extreme, normal, key = _numpy(views.aimclr_views(x, SEED))
    assert _is_crop_shear(normal, x) and _is_crop_shear(key, x)
    assert not _is_crop_shear(extreme, x)
    plain = _numpy(views.aimclr_views(x, SEED, aug_method=""))
    assert _is_crop_shear(plain[0], x)
    np.testing.assert_array_equal(plain[1], normal)


def test_aimclr_temporal_flip_only_when_selected():
    x = _batch()
    without = views.aimclr_views(x, SEED, aug_method="")[0].numpy()
    with_flip = views.aimclr_views(x, SEED, aug_method="6")[0].numpy()
    flipped = np.all(with_flip == without[:, :, ::-1], axis=(1, 2, 3, 4))
    unchanged = np.all(with_flip == without, axis=(1, 2, 3, 4))
    assert np.all(flipped | unchanged)


def test_actclr_weak_views_keep_the_center_joint_unsheared():
    x = _batch()
    _, _, weak, key = _numpy(views.actclr_views(x, SEED))
    assert _is_crop_shear(weak, x, keep_center=True)
    assert _is_crop_shear(key, x, keep_center=True)
    assert not np.allclose(weak, key)


def test_actclr_noise_std_differs_between_strong_and_aug_views():
    x = _batch(n=64)
    strong, aug, _, _ = _numpy(
        views.actclr_views(
            x, SEED, strong_aug_method="3", aug_method="3", crop_shear=False
        )
    )
    for view, std in ((strong, 0.05), (aug, 0.01)):
        noise = view - x
        noisy = np.any(noise != 0, axis=(1, 2, 3, 4))
        assert 0.25 < noisy.mean() < 0.75
        assert abs(noise[noisy].std() - std) < 0.05 * std


def test_actclr_without_crop_shear_or_augmentations_is_the_stream():
    x = _batch()
    outputs = _numpy(
        views.actclr_views(
            x,
            SEED,
            stream="motion",
            aug_method="",
            strong_aug_method="",
            crop_shear=False,
        )
    )
    for view in outputs:
        np.testing.assert_array_equal(view, joint_to_motion(x).numpy())


def test_actclr_mask_selection_equals_digit_selection():
    x = _batch()
    by_digits = _numpy(
        views.actclr_views(
            x, SEED, strong_aug_method="1389", aug_method="25", crop_shear=True
        )
    )

    @tf.function
    def by_mask(batch, strong, aug, crop_shear):
        return views.actclr_views(
            batch,
            SEED,
            strong_aug_method=strong,
            aug_method=aug,
            crop_shear=crop_shear,
        )

    masked = _numpy(
        by_mask(
            x,
            views.digit_mask("1389"),
            views.digit_mask("25"),
            tf.constant(True),
        )
    )
    for a, b in zip(by_digits, masked):
        np.testing.assert_allclose(a, b, atol=1e-6)
    off = _numpy(
        by_mask(
            x, views.digit_mask(""), views.digit_mask(""), tf.constant(False)
        )
    )
    for view in off:
        np.testing.assert_array_equal(view, x)


def test_streams_are_computed_after_augmentation():
    x = _batch()
    joints = views.get_views_fn("aimclr")(x, SEED)
    bones = views.get_views_fn("aimclr", stream="bone")(x, SEED)
    for joint_view, bone_view in zip(joints, bones):
        np.testing.assert_allclose(
            bone_view.numpy(), joint_to_bone(joint_view).numpy(), atol=1e-6
        )


def test_actclr_epoch_schedule():
    rng = np.random.default_rng(0)
    first = views.actclr_epoch_schedule(1, rng)
    assert first == views.ActCLRSelection("12345", "1234589", True)
    assert views.actclr_epoch_schedule(100, rng) == first
    drawn = set()
    for epoch, sizes in ((101, (3, 5)), (200, (3, 5)), (201, (1, 3))):
        for _ in range(5):
            selection = views.actclr_epoch_schedule(epoch, rng)
            assert len(selection.aug_method) == sizes[0]
            assert len(selection.strong_aug_method) == sizes[1]
            assert set(selection.aug_method) <= set("12345")
            assert set(selection.strong_aug_method) <= set("1234589")
            assert selection.crop_shear
            drawn.add(selection.aug_method)
    assert len(drawn) > 2
    late = views.actclr_epoch_schedule(301, rng)
    assert late == views.ActCLRSelection("", "", False)
    again = views.actclr_epoch_schedule(150, np.random.default_rng(7))
    assert again == views.actclr_epoch_schedule(150, np.random.default_rng(7))
    with pytest.raises(ValueError, match="1-based"):
        views.actclr_epoch_schedule(0, rng)


def test_schedule_selection_feeds_actclr_views():
    x = _batch()
    selection = views.actclr_epoch_schedule(400, np.random.default_rng(0))
    views_fn = views.get_views_fn(
        "actclr",
        aug_method=selection.aug_method,
        strong_aug_method=selection.strong_aug_method,
        crop_shear=selection.crop_shear,
    )
    for view in views_fn(x, SEED):
        np.testing.assert_array_equal(view.numpy(), x)


def test_get_views_fn_rejects_bad_configuration():
    with pytest.raises(KskelError, match="Unknown method='moco'"):
        views.get_views_fn("moco")
    with pytest.raises(KskelError, match="Unknown stream"):
        views.get_views_fn("aimclr", stream="speed")
    with pytest.raises(KskelError, match="Unknown joint layout"):
        views.get_views_fn("aimclr", layout="kinect99")
    with pytest.raises(KskelError, match="strong_aug_method"):
        views.get_views_fn("aimclr", strong_aug_method="123")
    with pytest.raises(KskelError, match=r"unknown augmentation codes \['8'\]"):
        views.get_views_fn("aimclr", aug_method="1238")
    with pytest.raises(KskelError, match="unknown augmentation codes"):
        views.get_views_fn("actclr", strong_aug_method="12a")
    with pytest.raises(KskelError, match="unknown augmentation codes"):
        views.digit_mask("0")

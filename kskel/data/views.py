"""View recipes of SkeletonCLR, AimCLR and ActCLR (FACTS §4.2).

A recipe maps one batch of joint coordinates x, shape (N, M, T, V, C)
float32, and a stateless seed (int32/int64, shape [2]) to a tuple of views,
each (N, M, T, V, C) float32. Every view gets its own seed and every
augmentation inside it its own seed, derived with `stateless_fold_in`, so a
recipe is deterministic given the seed and runs inside `tf.data` `map`
after `batch` or in `tf.function` with no Python per sample. The stream
(joint, motion or bone) is computed per view after augmentation (FACTS
§3.3).

Optional augmentations are chosen with the official digit codes
(`aug_method` / `strong_aug_method`), applied in digit order:

    1 spatial flip   2 rotate   3 Gaussian noise   4 Gaussian blur
    5 axis mask      6 temporal flip   7 dropout   8 interpolate
    9 rescale (ActCLR)

A selection is either a digit string (static: unselected ops are not
traced) or a bool tensor of shape [10] indexed by digit (see `digit_mask`),
so a per-epoch schedule can live inside the input graph (`tf.cond`).

Example:

    views_fn = get_views_fn("aimclr", stream="motion")
    dataset = dataset.batch(128).enumerate().map(
        lambda i, x: views_fn(x, tf.stack([tf.constant(0, tf.int64), i])))
"""

import dataclasses
import functools
import inspect

import numpy as np
import tensorflow as tf

from kskel.data import augment
from kskel.data.streams import check_stream
from kskel.data.streams import to_stream
from kskel.errors import KskelError
from kskel.graph import get_layout

NUM_VIEWS = {"single": 1, "skeletonclr": 2, "aimclr": 3, "actclr": 4}

_DIGITS = "123456789"
_AIMCLR_DIGITS = "123456"
_ACTCLR_DIGITS = "123456789"
# Seed slots: crop and shear use 0 and 1, digit d uses 10 + d, so turning
# one augmentation on or off never changes another one's randomness.
_CROP_SLOT = 0
_SHEAR_SLOT = 1
_DIGIT_SLOT = 10


def digit_mask(digits):
    """A digit string as a (10,) bool array; entry d is True if d is in it.

    Args:
        digits: str of digits, e.g. "1234589".

    Returns:
        numpy bool array of shape (10,).
    """
    _check_digits(digits, _DIGITS, "digits")
    return np.array([str(d) in digits for d in range(10)])


def _check_digits(digits, allowed, name):
    bad = sorted(set(digits) - set(allowed))
    if bad:
        raise KskelError(
            f"{name}={digits!r} has unknown augmentation codes {bad}; "
            f"allowed digits are {allowed!r}."
        )


def _selection(selection, allowed, name):
    """Validates a digit string, or converts a mask to a (10,) bool tensor."""
    if isinstance(selection, str):
        _check_digits(selection, allowed, name)
        return selection
    mask = tf.convert_to_tensor(selection, tf.bool)
    if not mask.shape.is_compatible_with([10]):
        raise ValueError(
            f"{name} must be a digit string or a bool mask of shape [10]. "
            f"Received: {name}.shape={mask.shape}"
        )
    return mask


def _enabled(selection, digit):
    """Python bool for a digit string, scalar bool tensor for a mask."""
    if isinstance(selection, str):
        return digit in selection
    return selection[int(digit)]


def _maybe(flag, fn, x):
    """fn(x) where `flag` holds: statically for a bool, else via tf.cond."""
    if isinstance(flag, (bool, np.bool_)):
        return fn(x) if flag else x
    return tf.cond(
        tf.convert_to_tensor(flag, tf.bool), lambda: fn(x), lambda: x
    )


def _fold(seed, slot):
    return tf.random.experimental.stateless_fold_in(seed, slot)


def _digit_ops(noise_std, layout):
    return {
        "1": functools.partial(augment.spatial_flip, layout=layout),
        "2": augment.rotate,
        "3": functools.partial(augment.gaussian_noise, std=noise_std),
        "4": augment.gaussian_blur,
        "5": augment.axis_mask,
        "6": augment.temporal_flip,
        "7": augment.dropout,
        "8": augment.interpolate,
        "9": functools.partial(augment.rescale, layout=layout),
    }


def _view(
    x,
    seed,
    *,
    stream,
    layout,
    crop_ratio,
    shear_amplitude,
    selection="",
    noise_std=0.01,
    keep_joint=None,
    crop_shear=True,
):
    """crop -> shear -> selected digit ops -> stream, for one view."""

    def crop_and_shear(v):
        v = augment.temporal_crop(v, _fold(seed, _CROP_SLOT), crop_ratio)
        return augment.shear(
            v, _fold(seed, _SHEAR_SLOT), shear_amplitude, keep_joint
        )

    x = _maybe(crop_shear, crop_and_shear, x)
    for digit, op in _digit_ops(noise_std, layout).items():
        op_seed = _fold(seed, _DIGIT_SLOT + int(digit))
        x = _maybe(
            _enabled(selection, digit), functools.partial(op, seed=op_seed), x
        )
    return to_stream(x, stream, layout)


def _view_seeds(seed, count):
    return [_fold(seed, i) for i in range(count)]


def single_views(
    x,
    seed,
    *,
    stream="joint",
    layout="ntu25",
    crop_ratio=6,
    shear_amplitude=0.5,
):
    """One view, crop -> shear (`Feeder_single`).

    The KNN monitor uses it as is; linear evaluation and finetuning pass
    `crop_ratio=-1, shear_amplitude=-1` (no augmentation), as the official
    configs do.

    Args:
        x: float32 tensor of shape (N, M, T, V, C), joint coordinates.
        seed: int32/int64 tensor of shape [2].
        stream: "joint", "motion" or "bone". Defaults to `"joint"`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.
        crop_ratio: int, temporal crop ratio; <= 0 disables. Defaults to `6`.
        shear_amplitude: float; <= 0 disables. Defaults to `0.5`.

    Returns:
        a 1-tuple of float32 tensors of shape (N, M, T, V, C).
    """
    (view_seed,) = _view_seeds(seed, 1)
    return (
        _view(
            x,
            view_seed,
            stream=stream,
            layout=layout,
            crop_ratio=crop_ratio,
            shear_amplitude=shear_amplitude,
        ),
    )


def skeletonclr_views(
    x,
    seed,
    *,
    stream="joint",
    layout="ntu25",
    crop_ratio=6,
    shear_amplitude=0.5,
):
    """SkeletonCLR's two views (`Feeder_dual`), each crop -> shear.

    Args:
        x: float32 tensor of shape (N, M, T, V, C), joint coordinates.
        seed: int32/int64 tensor of shape [2].
        stream: "joint", "motion" or "bone". Defaults to `"joint"`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.
        crop_ratio: int, temporal crop ratio; <= 0 disables. Defaults to `6`.
        shear_amplitude: float; <= 0 disables. Defaults to `0.5`.

    Returns:
        (query, key): float32 tensors of shape (N, M, T, V, C).
    """
    return tuple(
        _view(
            x,
            view_seed,
            stream=stream,
            layout=layout,
            crop_ratio=crop_ratio,
            shear_amplitude=shear_amplitude,
        )
        for view_seed in _view_seeds(seed, 2)
    )


def aimclr_views(
    x,
    seed,
    *,
    stream="joint",
    layout="ntu25",
    crop_ratio=6,
    shear_amplitude=0.5,
    aug_method="12345",
):
    """AimCLR's three views (`Feeder_triple`): extreme, normal, normal.

    normal = crop -> shear. extreme = crop -> shear -> the `aug_method`
    digits: 1 flip, 2 rotate, 3 noise(0.01), 4 blur, 5 axis mask and, only
    when '6' is given, temporal flip last. HEAD's default '12345' leaves
    temporal flip out; the paper lists it ('123456').

    Args:
        x: float32 tensor of shape (N, M, T, V, C), joint coordinates.
        seed: int32/int64 tensor of shape [2].
        stream: "joint", "motion" or "bone". Defaults to `"joint"`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.
        crop_ratio: int, temporal crop ratio; <= 0 disables. Defaults to `6`.
        shear_amplitude: float; <= 0 disables. Defaults to `0.5`.
        aug_method: digits from "123456" or a (10,) bool mask. Defaults to
            `"12345"`.

    Returns:
        (extreme, normal, normal): the model's (im_q_extreme, im_q, im_k),
        float32 tensors of shape (N, M, T, V, C).
    """
    selection = _selection(aug_method, _AIMCLR_DIGITS, "aug_method")
    base = dict(
        stream=stream,
        layout=layout,
        crop_ratio=crop_ratio,
        shear_amplitude=shear_amplitude,
    )
    extreme_seed, query_seed, key_seed = _view_seeds(seed, 3)
    return (
        _view(x, extreme_seed, selection=selection, noise_std=0.01, **base),
        _view(x, query_seed, **base),
        _view(x, key_seed, **base),
    )


def actclr_views(
    x,
    seed,
    *,
    stream="joint",
    layout="ntu25",
    crop_ratio=6,
    shear_amplitude=0.5,
    aug_method="12345",
    strong_aug_method="1234589",
    crop_shear=True,
):
    """ActCLR's four views (its `Feeder_triple`): strong, aug, weak, weak.

    Every view starts with crop -> shear, where the shear leaves the center
    joint (NTU index 20) unchanged, as ActCLR's `shear` does.

    - strong: then the `strong_aug_method` digits, noise std 0.05.
    - aug: then the `aug_method` digits, noise std 0.01.
    - weak (twice): nothing more.

    Args:
        x: float32 tensor of shape (N, M, T, V, C), joint coordinates.
        seed: int32/int64 tensor of shape [2].
        stream: "joint", "motion" or "bone". Defaults to `"joint"`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.
        crop_ratio: int, temporal crop ratio; <= 0 disables. Defaults to `6`.
        shear_amplitude: float; <= 0 disables. Defaults to `0.5`.
        aug_method: digits or (10,) bool mask for the aug view. Defaults to
            `"12345"`.
        strong_aug_method: digits or (10,) bool mask for the strong view.
            Defaults to `"1234589"`.
        crop_shear: bool or scalar bool tensor; False disables crop and
            shear in all four views (epochs > 300). Defaults to `True`.

    Returns:
        (strong, aug, weak, weak): the model's (im_q_extreme, im_q, im_p,
        im_k), float32 tensors of shape (N, M, T, V, C).
    """
    aug = _selection(aug_method, _ACTCLR_DIGITS, "aug_method")
    strong = _selection(strong_aug_method, _ACTCLR_DIGITS, "strong_aug_method")
    base = dict(
        stream=stream,
        layout=layout,
        crop_ratio=crop_ratio,
        shear_amplitude=shear_amplitude,
        crop_shear=crop_shear,
        keep_joint=get_layout(layout).center,
    )
    strong_seed, aug_seed, weak_seed, key_seed = _view_seeds(seed, 4)
    return (
        _view(x, strong_seed, selection=strong, noise_std=0.05, **base),
        _view(x, aug_seed, selection=aug, noise_std=0.01, **base),
        _view(x, weak_seed, **base),
        _view(x, key_seed, **base),
    )


@dataclasses.dataclass(frozen=True)
class ActCLRSelection:
    """One epoch's ActCLR augmentation choice; keywords of `actclr_views`.

    Args:
        aug_method: str of digits for the aug view.
        strong_aug_method: str of digits for the strong view.
        crop_shear: bool, whether crop and shear run in all four views.
    """

    aug_method: str
    strong_aug_method: str
    crop_shear: bool


def actclr_epoch_schedule(epoch, rng):
    """ActCLR's per-epoch augmentation selection (`pretrain_actclr.py`).

    Drawn once for the whole epoch (1-based):

    - 1-100: all of '12345' / all of '1234589';
    - 101-200: 3 random of '12345' / 5 random of '1234589';
    - 201-300: 1 / 3;
    - > 300: none, and crop and shear are disabled too.

    Args:
        epoch: int >= 1.
        rng: `numpy.random.Generator` for the random subsets.

    Returns:
        `ActCLRSelection` with sorted digit strings.
    """
    if epoch < 1:
        raise ValueError(f"Epochs are 1-based. Received: epoch={epoch}")
    if epoch > 300:
        return ActCLRSelection("", "", crop_shear=False)
    counts = {100: (5, 7), 200: (3, 5), 300: (1, 3)}
    limit = min(limit for limit in counts if epoch <= limit)
    num_aug, num_strong = counts[limit]
    return ActCLRSelection(
        aug_method=_sample_digits(rng, "12345", num_aug),
        strong_aug_method=_sample_digits(rng, "1234589", num_strong),
        crop_shear=True,
    )


def _sample_digits(rng, digits, count):
    chosen = rng.choice(list(digits), size=count, replace=False)
    return "".join(sorted(chosen))


_RECIPES = {
    "single": single_views,
    "skeletonclr": skeletonclr_views,
    "aimclr": aimclr_views,
    "actclr": actclr_views,
}
_FIXED_ARGS = {"x", "seed", "stream", "layout"}
_DIGIT_OPTIONS = {
    ("aimclr", "aug_method"): _AIMCLR_DIGITS,
    ("actclr", "aug_method"): _ACTCLR_DIGITS,
    ("actclr", "strong_aug_method"): _ACTCLR_DIGITS,
}


def get_views_fn(method, stream="joint", layout="ntu25", **options):
    """The `views_fn(x, seed) -> tuple of views` of a method.

    Args:
        method: "single", "skeletonclr", "aimclr" or "actclr".
        stream: "joint", "motion" or "bone". Defaults to `"joint"`.
        layout: layout name or `SkeletonLayout`. Defaults to `"ntu25"`.
        **options: the recipe's keyword options (e.g. `crop_ratio`,
            `shear_amplitude`, `aug_method`, `strong_aug_method`,
            `crop_shear`).

    Returns:
        a callable `views_fn(x, seed)` returning `NUM_VIEWS[method]` float32
        tensors of shape (N, M, T, V, C).

    Raises:
        KskelError: for an unknown method, stream, layout, option or
            augmentation digit.
    """
    if method not in _RECIPES:
        raise KskelError(
            f"Unknown method={method!r}; use one of {', '.join(_RECIPES)}."
        )
    check_stream(stream)
    get_layout(layout)
    recipe = _RECIPES[method]
    accepted = set(inspect.signature(recipe).parameters) - _FIXED_ARGS
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise KskelError(
            f"Unknown view options {unknown} for method {method!r}; "
            f"accepted: {', '.join(sorted(accepted))}."
        )
    for name, value in options.items():
        allowed = _DIGIT_OPTIONS.get((method, name))
        if allowed is not None:
            _selection(value, allowed, name)
    return functools.partial(recipe, stream=stream, layout=layout, **options)

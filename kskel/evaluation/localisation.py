"""How well ActCLR's unsupervised actionlet finds the moving joints.

The synthetic dataset (`data_prep.synthetic`) stores with every sample a
ground-truth actionlet `(M, T, V)`: 1 where person m performs the class's
motion at frame t and joint v is one the motion moves. ActCLR's actionlet
(`ActCLR.actionlet`) is a soft mask `(N, M, T', V)` in [0, 1] on the
encoder's output grid, `T' = ceil(T / 4)` after ST-GCN's two stride-2
temporal layers. The two are compared on the bodies present in each sample
(a body whose coordinates are all zero is absent and left out), at two
levels:

- (time, joint) cells: the ground truth is max-pooled over each group of 4
  frames, `[4 t', 4 t' + 4)`, the frames the official Skeleton Mix maps to
  grid cell t'. Max, not mean: a cell of the last feature map summarises
  at least those 4 frames (its receptive field spans many more), so it
  moves when any of them does, and max pooling keeps the ground truth
  binary, so the IoU needs no second threshold.
- joints: a joint belongs to the ground truth when it does at some frame.
  The IoU takes the joints whose thresholded actionlet is on in some cell;
  the AUC ranks joints by their time-averaged actionlet (the per-joint
  weight that `plots.plot_actionlet` draws).

Scores: the IoU of the thresholded actionlet with the binary ground truth
(pooled over all bodies, not averaged per sample) and the ROC-AUC of the
soft actionlet (exact, Mann-Whitney with average ranks for ties). An
actionlet that has collapsed to ~0 (ActCLR-HEAD's bug, `mask_axis=
"head_collapse"`, or a barely trained network) ties everywhere and scores
AUC 0.5 and IoU 0; one saturated at ~1 scores AUC 0.5 and an IoU equal to
the ground-truth rate. The mean actionlet value is reported beside the
scores to make both visible. The actionlet is the key network's in
inference mode (`ActCLR.actionlet`), with the model's anchor.

A reference point: `speed_actionlet`, a mask computed from the input alone
(each joint's speed, no model), is scored beside the model's. On the
synthetic test split (300 samples, seed 0) it reaches a cell AUC of 0.78
and a joint AUC of 0.70: the ground truth is findable from motion, and a
model actionlet near 0.5 has not learnt to find it.
"""

import math

import numpy as np

from kskel.errors import KskelError

# Frames per cell of the encoder's output: two stride-2 temporal layers.
FRAMES_PER_CELL = 4
# Below this mean value the actionlet counts as collapsed.
COLLAPSED_MEAN = 1e-3


def downsample_time(mask, cells, group=FRAMES_PER_CELL, reduce="max"):
    """Pools a mask over groups of `group` frames.

    Args:
        mask: array (..., T, V).
        cells: int, T' = ceil(T / group).
        group: int, frames per cell. Defaults to 4.
        reduce: "max" or "mean" over each group. Defaults to "max".

    Returns:
        float32 array (..., cells, V): cell t' pools frames
        `[group t', group t' + group)`; a shorter last group is padded
        with its last frame (a no-op for the max, a reweighting for the
        mean).

    Raises:
        KskelError: when `cells` is not ceil(T / group), or on another
            `reduce`.
    """
    if reduce not in ("max", "mean"):
        raise KskelError(f"reduce must be 'max' or 'mean', got {reduce!r}.")
    mask = np.asarray(mask, np.float32)
    frames, joints = mask.shape[-2:]
    if cells != math.ceil(frames / group):
        raise KskelError(
            f"An actionlet of {cells} time cells does not match "
            f"{frames} frames pooled by {group} (expected "
            f"{math.ceil(frames / group)}); is the encoder not ST-GCN?"
        )
    padding = [(0, 0)] * (mask.ndim - 2) + [(0, cells * group - frames), (0, 0)]
    padded = np.pad(mask, padding, "edge")
    grouped = padded.reshape(*mask.shape[:-2], cells, group, joints)
    return getattr(grouped, reduce)(axis=-2)


def roc_auc(scores, labels):
    """Exact ROC-AUC: the Mann-Whitney U statistic over P * N pairs.

    A positive scoring above a negative counts 1, a tie 1/2 (average
    ranks).

    Args:
        scores: array of any shape, the soft predictions.
        labels: bool array of the same shape, the positives.

    Returns:
        float in [0, 1], or NaN when there are no positives or no
        negatives.
    """
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(
            "scores and labels must have the same size. Received: "
            f"{scores.shape} and {labels.shape}"
        )
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(
        scores, return_inverse=True, return_counts=True
    )
    # 1-based rank of each distinct value, averaged over its ties.
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = average_rank[inverse][labels].sum()
    u = rank_sum - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def iou(predicted, truth):
    """|predicted AND truth| / |predicted OR truth| of two bool arrays.

    Returns:
        float in [0, 1], or NaN when both are empty.
    """
    predicted = np.asarray(predicted, bool)
    truth = np.asarray(truth, bool)
    union = np.logical_or(predicted, truth).sum()
    if union == 0:
        return float("nan")
    return float(np.logical_and(predicted, truth).sum() / union)


def present_bodies(skeleton):
    """(N, M) bool: bodies with a non-zero coordinate in (N, M, T, V, C)."""
    return np.any(np.asarray(skeleton) != 0, axis=(2, 3, 4))


def score_actionlets(actionlet, ground_truth, present, threshold=0.5):
    """Localisation scores of actionlets against a ground-truth mask.

    Args:
        actionlet: (N, M, T', V) soft actionlet in [0, 1].
        ground_truth: (N, M, T, V) ground truth in [0, 1] at the frame
            rate (>= 0.5 counts as positive after pooling).
        present: (N, M) bool, the bodies to score.
        threshold: float, an actionlet value >= threshold is "on".
            Defaults to 0.5.

    Returns:
        dict: `cell` and `joint` ({"iou", "auc"}, None where undefined),
        `actionlet_mean` (over the scored cells), `ground_truth_rate`
        (positive fraction per level), `num_bodies`, `threshold`,
        `pooling`, `collapsed` (mean < 1e-3) and `saturated` (mean >
        1 - 1e-3), with a `note` when either holds.

    Raises:
        KskelError: mismatched shapes or no body to score.
    """
    actionlet = np.asarray(actionlet, np.float32)
    present = np.asarray(present, bool)
    if actionlet.ndim != 4 or present.shape != actionlet.shape[:2]:
        raise KskelError(
            f"actionlet {actionlet.shape} and present {present.shape} do "
            "not match (N, M, T', V) and (N, M)."
        )
    truth = downsample_time(ground_truth, actionlet.shape[2])
    if truth.shape != actionlet.shape:
        raise KskelError(
            f"ground truth pooled to {truth.shape}, actionlet "
            f"{actionlet.shape}: different bodies or joints."
        )
    if not present.any():
        raise KskelError("No body is present: nothing to score.")
    soft = actionlet[present]  # (B, T', V)
    truth = truth[present] >= 0.5
    on = soft >= threshold
    joint_truth = truth.any(axis=1)
    scores = {
        "cell": _level(on, soft, truth),
        "joint": _level(on.any(axis=1), soft.mean(axis=1), joint_truth),
        "actionlet_mean": float(soft.mean()),
        "ground_truth_rate": {
            "cell": float(truth.mean()),
            "joint": float(joint_truth.mean()),
        },
        "num_bodies": int(present.sum()),
        "threshold": float(threshold),
        "pooling": f"max over {FRAMES_PER_CELL} frames",
        "collapsed": bool(soft.mean() < COLLAPSED_MEAN),
        "saturated": bool(soft.mean() > 1.0 - COLLAPSED_MEAN),
    }
    if scores["collapsed"]:
        scores["note"] = (
            "The actionlet is ~0 everywhere (mean "
            f"{scores['actionlet_mean']:.2g}): a constant mask scores AUC "
            "0.5 and IoU 0, so these numbers say nothing about "
            "localisation. ActCLR-HEAD's mask_axis='head_collapse' does "
            "this by construction; an undertrained network can too."
        )
    elif scores["saturated"]:
        scores["note"] = (
            "The actionlet is ~1 everywhere (mean "
            f"{scores['actionlet_mean']:.4g}): IoU is then the ground-truth "
            "rate and AUC about 0.5, so these numbers say nothing about "
            "localisation."
        )
    return scores


def _level(on, soft, truth):
    return {
        "iou": _finite_or_none(iou(on, truth)),
        "auc": _finite_or_none(roc_auc(soft, truth)),
    }


def _finite_or_none(value):
    return value if math.isfinite(value) else None


def speed_actionlet(skeleton, cells, group=FRAMES_PER_CELL):
    """A model-free actionlet: each joint's speed, pooled to cells.

    Args:
        skeleton: (N, M, T, V, C) joint coordinates.
        cells: int, T' = ceil(T / group).
        group: int, frames per cell.

    Returns:
        float32 array (N, M, T', V) in [0, 1]: the distance each joint
        moves between consecutive frames, averaged over each group of
        frames and divided by the body's largest cell value (0 for a body
        that does not move).
    """
    skeleton = np.asarray(skeleton, np.float32)
    step = np.diff(skeleton, axis=2, prepend=skeleton[:, :, :1])
    speed = np.linalg.norm(step, axis=-1)  # (N, M, T, V)
    pooled = downsample_time(speed, cells, group, reduce="mean")
    peak = pooled.max(axis=(2, 3), keepdims=True)
    return np.where(peak > 0, pooled / np.maximum(peak, 1e-12), 0.0).astype(
        np.float32
    )


def load_split_arrays(data_dir, split, limit=None):
    """The raw samples of a split as NumPy arrays, in written order.

    Args:
        data_dir: dataset directory.
        split: split name.
        limit: int or None, read only the first `limit` samples.

    Returns:
        dict: `skeleton` (N, M, T, V, C) float32 joint coordinates,
        `label` (N,) int32, `name` (N,) str, and `actionlet` (N, M, T, V)
        when the dataset has ground-truth actionlets.
    """
    from kskel.data import pipeline

    dataset = pipeline.load_split(data_dir, split, shuffle=False)
    if limit is not None:
        dataset = dataset.take(limit)
    keys = ("skeleton", "label", "name", "actionlet")
    parts = {}
    for batch in dataset.batch(256):
        for key in keys:
            if key in batch:
                parts.setdefault(key, []).append(batch[key].numpy())
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    arrays["name"] = np.array([n.decode("utf-8") for n in arrays["name"]])
    return arrays


def check_actclr(model, manifest, source):
    """Raises `KskelError` unless `model` is an ActCLR for these samples."""
    from kskel.data import schema
    from kskel.evaluation.features import check_compatible
    from kskel.models.actclr import ActCLR

    if not isinstance(model, ActCLR):
        raise KskelError(
            f"{source}: actionlets need an ActCLR pretraining run, this "
            f"model is a {type(model).__name__}."
        )
    check_compatible(model.query, manifest, source)
    shape = schema.sample_shape(manifest)
    if tuple(shape) != tuple(model.view_shape):
        raise KskelError(
            f"{source}: samples of shape (M, T, V, C) = {shape}, the model "
            f"was pretrained on {tuple(model.view_shape)}."
        )


def predict_actionlets(model, skeleton, layout, batch_size=64):
    """ActCLR actionlets of raw joint sequences, (N, M, T', V).

    The joints go through the model's input stream first. Batches are
    made as equal as possible (never a tiny last one): with the official
    batch-mean anchor the anchor is the mean of each batch, and a batch of
    one sample would be its own anchor (an all-zero actionlet).

    Args:
        model: an `ActCLR` model.
        skeleton: (N, M, T, V, C) float32 joint coordinates.
        layout: layout name (for the bone stream).
        batch_size: int, largest batch.

    Returns:
        float32 array (N, M, T', V).
    """
    from keras import ops

    from kskel.data.streams import to_stream

    skeleton = np.asarray(skeleton, np.float32)
    count = math.ceil(len(skeleton) / batch_size)
    masks = []
    for chunk in np.array_split(skeleton, count):
        x = to_stream(chunk, model.stream, layout)
        masks.append(ops.convert_to_numpy(model.actionlet(x)))
    return np.concatenate(masks)


def actionlet_scores(model, data_dir, split, batch_size=64, threshold=0.5):
    """Localisation scores of an ActCLR model's actionlet on a split.

    Args:
        model: the contrastive `ActCLR` model of
            `kskel.pretraining.restore_model(model_dir)`; its `stream` is
            the input it was pretrained on.
        data_dir: a dataset with ground-truth actionlets (the synthetic
            one).
        split: split name.
        batch_size: int, largest batch (see `predict_actionlets`).
        threshold: float in (0, 1), an actionlet value >= threshold is on.

    Returns:
        dict: the scores of `score_actionlets` plus `speed_baseline` (the
        same scores of `speed_actionlet`), `split`, `data_dir`,
        `num_samples`, `stream`, and the model's `anchor`, `mask_axis`,
        `gradient_activation`, `mask_smoothing` and `mask_threshold`,
        `cells` (T') and `frames_per_cell`.

    Raises:
        KskelError: not an ActCLR model, a dataset without ground truth,
            another joint layout or sample shape, an empty or unknown split.
    """
    from kskel.data import schema

    if not 0.0 < threshold < 1.0:
        raise KskelError(f"threshold must be in (0, 1), got {threshold}.")
    manifest = schema.load_manifest(data_dir)
    check_actclr(model, manifest, data_dir)
    if not manifest["has_actionlet"]:
        raise KskelError(
            f"{data_dir}: the dataset has no ground-truth actionlets (only "
            "the synthetic dataset of data_prep.synthetic has them)."
        )
    arrays = load_split_arrays(data_dir, split)
    actionlet = predict_actionlets(
        model, arrays["skeleton"], manifest["layout"], batch_size
    )
    present = present_bodies(arrays["skeleton"])
    scores = score_actionlets(
        actionlet, arrays["actionlet"], present, threshold
    )
    baseline = score_actionlets(
        speed_actionlet(arrays["skeleton"], actionlet.shape[2]),
        arrays["actionlet"],
        present,
        threshold,
    )
    scores.update(
        {
            "speed_baseline": {
                key: baseline[key]
                for key in ("cell", "joint", "actionlet_mean")
            },
            "split": split,
            "data_dir": str(data_dir),
            "num_samples": int(len(actionlet)),
            "stream": model.stream,
            "anchor": model.anchor,
            "mask_axis": model.mask_axis,
            "gradient_activation": model.gradient_activation,
            "mask_smoothing": model.mask_smoothing,
            "mask_threshold": model.mask_threshold,
            "cells": int(actionlet.shape[2]),
            "frames_per_cell": FRAMES_PER_CELL,
        }
    )
    return scores

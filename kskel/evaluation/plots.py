"""Headless pictures: actionlets, average motion, t-SNE, confusion matrix.

Every function draws one matplotlib `Figure` on the Agg canvas (no pyplot,
no display, no global figure state; matplotlib is imported only when a
picture is drawn), writes it as a PNG atomically (`kskel.fileio`) and
returns the path. `log_images_to_tensorboard` puts written PNGs into a
TensorBoard log.

Skeletons are drawn as their (x, y) projection with the bones of the
layout, x to the right and y up; after the NTU preprocessing (the person
facing -z) that is a view from behind, the person's right side on the
right.
"""

import os

import numpy as np

from kskel import fileio
from kskel.errors import KskelError
from kskel.graph import get_layout

_DPI = 100


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    path = os.fspath(path)
    with fileio.atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path


def _bodies(skeleton):
    """Indices of the bodies of (M, T, V, C) with a non-zero coordinate."""
    return [m for m in range(skeleton.shape[0]) if np.any(skeleton[m] != 0)]


def _draw_bones(axes, points, layout, **style):
    for child, parent in layout.edges:
        axes.plot(
            points[[child, parent], 0], points[[child, parent], 1], **style
        )


def _check_skeleton(skeleton, layout, what):
    skeleton = np.asarray(skeleton, np.float32)
    if skeleton.ndim != 4 or skeleton.shape[2] != layout.num_joints:
        raise KskelError(
            f"{what}: expected (M, T, {layout.num_joints}, C) joint "
            f"coordinates for layout {layout.name!r}, got {skeleton.shape}."
        )
    if skeleton.shape[3] < 2:
        raise KskelError(f"{what}: needs at least x and y coordinates.")
    return skeleton


def plot_actionlet(
    skeleton,
    weights,
    path,
    *,
    layout="ntu25",
    frame=None,
    ground_truth=None,
    title="",
):
    """One frame of a sample, joints coloured by their actionlet weight.

    Args:
        skeleton: (M, T, V, C) joint coordinates of one sample (absent,
            all-zero bodies are not drawn).
        weights: (M, V) per-joint weight in [0, 1], e.g. the actionlet
            averaged over time.
        path: output PNG path.
        layout: layout name or `SkeletonLayout` (bones). Defaults to
            "ntu25".
        frame: int, the frame drawn. Defaults to the middle frame.
        ground_truth: optional (M, V) weights drawn in a second panel
            on the same colour scale (e.g. the time-averaged ground truth).
        title: str, figure title.

    Returns:
        str, `path`.
    """
    layout = get_layout(layout)
    skeleton = _check_skeleton(skeleton, layout, "plot_actionlet")
    panels = [("actionlet", np.asarray(weights, np.float32))]
    if ground_truth is not None:
        panels.append(("ground truth", np.asarray(ground_truth, np.float32)))
    for name, values in panels:
        if values.shape != skeleton.shape[:1] + skeleton.shape[2:3]:
            raise KskelError(
                f"plot_actionlet: {name} weights of shape {values.shape}, "
                f"expected (M, V) = {(skeleton.shape[0], layout.num_joints)}."
            )
    frames = skeleton.shape[1]
    frame = frames // 2 if frame is None else int(frame)
    if not 0 <= frame < frames:
        raise KskelError(
            f"plot_actionlet: frame {frame} outside [0, {frames})."
        )
    bodies = _bodies(skeleton)
    figure = _figure(4.0 * len(panels) + 1.0, 4.5)
    scatter = None
    for i, (name, values) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        for m in bodies:
            points = skeleton[m, frame]
            _draw_bones(axes, points, layout, color="0.6", linewidth=1.5)
            scatter = axes.scatter(
                points[:, 0],
                points[:, 1],
                c=values[m],
                cmap="viridis",
                vmin=0.0,
                vmax=1.0,
                s=40,
                edgecolors="black",
                linewidths=0.5,
                zorder=3,
            )
        axes.set_aspect("equal", adjustable="datalim")
        axes.set_title(f"{name} (frame {frame})")
        axes.set_xlabel("x")
        axes.set_ylabel("y")
    if scatter is not None:
        colorbar = figure.colorbar(scatter, ax=figure.axes)
        colorbar.set_label("weight (time average)")
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_average_motion(
    motion, path, *, layout="ntu25", num_frames=5, title=""
):
    """A few frames of a mean sequence (ActCLR's anchor), overlaid.

    Args:
        motion: (M, T, V, C) mean sequence, e.g. `ActCLR.average_motion`.
        path: output PNG path.
        layout: layout name or `SkeletonLayout`. Defaults to "ntu25".
        num_frames: int, frames drawn, evenly spaced, early ones light.
        title: str, figure title.

    Returns:
        str, `path`.
    """
    from matplotlib import colormaps

    layout = get_layout(layout)
    motion = _check_skeleton(motion, layout, "plot_average_motion")
    if num_frames < 1:
        raise KskelError(f"plot_average_motion: num_frames {num_frames} < 1.")
    total = motion.shape[1]
    picked = np.unique(
        np.linspace(0, total - 1, num_frames).round().astype(int)
    )
    colours = colormaps["plasma"](np.linspace(0.1, 0.85, len(picked)))
    figure = _figure(5.5, 5.0)
    axes = figure.add_subplot(1, 1, 1)
    bodies = _bodies(motion)
    for m in bodies:
        for t, colour in zip(picked, colours):
            points = motion[m, t]
            label = f"frame {t}" if m == bodies[0] else None
            _draw_bones(axes, points, layout, color=colour, linewidth=1.5)
            axes.scatter(
                points[:, 0], points[:, 1], color=colour, s=12, label=label
            )
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")
    axes.set_title(title or "average motion")
    return _save(figure, path)


def plot_tsne(embedding, labels, class_names, path, *, title=""):
    """A 2-D embedding, points coloured by class, with a class legend.

    Args:
        embedding: (n, 2) coordinates (e.g. `tsne.tsne(features)`).
        labels: (n,) int class indices into `class_names`.
        class_names: list of str.
        path: output PNG path.
        title: str, axes title.

    Returns:
        str, `path`.
    """
    from matplotlib import colormaps

    embedding = np.asarray(embedding, np.float64)
    labels = np.asarray(labels, np.int64)
    if embedding.ndim != 2 or embedding.shape[1] != 2:
        raise KskelError(f"plot_tsne: expected (n, 2), got {embedding.shape}.")
    if labels.shape != embedding.shape[:1]:
        raise KskelError(
            f"plot_tsne: {labels.shape[0]} labels for {len(embedding)} points."
        )
    _check_labels(labels, class_names, "plot_tsne")
    if len(class_names) <= 20:
        colours = colormaps["tab20"](np.arange(len(class_names)))
    else:
        colours = colormaps["turbo"](np.linspace(0, 1, len(class_names)))
    figure = _figure(9.0, 6.5)
    axes = figure.add_subplot(1, 1, 1)
    for k in np.unique(labels):
        points = embedding[labels == k]
        axes.scatter(
            points[:, 0],
            points[:, 1],
            s=10,
            color=colours[k],
            label=class_names[k],
        )
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(title or f"t-SNE of {len(embedding)} samples")
    axes.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize="small",
        markerscale=1.5,
        ncol=1 if len(np.unique(labels)) <= 30 else 2,
    )
    figure.tight_layout()
    return _save(figure, path)


def _check_labels(labels, class_names, what):
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise KskelError(
            f"{what}: labels must lie in [0, {len(class_names)}) "
            f"(class_names), got [{labels.min()}, {labels.max()}]."
        )


def confusion_matrix(predictions, labels, num_classes):
    """(C, C) int64 counts, rows the true class, columns the prediction."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    return counts


def row_normalise(counts):
    """Each row divided by its sum (rows without samples stay zero)."""
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(
        counts, totals, out=np.zeros_like(counts), where=totals > 0
    )


def plot_confusion(logits, labels, class_names, path, *, title=""):
    """Row-normalised confusion matrix of logits against true labels.

    Args:
        logits: (n, C) scores; the prediction is their argmax.
        labels: (n,) int true classes.
        class_names: list of C str.
        path: output PNG path.
        title: str, axes title (defaults to the top-1 accuracy).

    Returns:
        str, `path`.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels, np.int64)
    classes = len(class_names)
    if logits.ndim != 2 or logits.shape[1] != classes:
        raise KskelError(
            f"plot_confusion: logits of shape {logits.shape}, expected "
            f"(n, {classes}) for {classes} class names."
        )
    if labels.shape != logits.shape[:1]:
        raise KskelError(
            f"plot_confusion: {labels.shape[0]} labels for "
            f"{logits.shape[0]} logits."
        )
    _check_labels(labels, class_names, "plot_confusion")
    predictions = np.argmax(logits, axis=1)
    rates = row_normalise(confusion_matrix(predictions, labels, classes))
    size = min(4.0 + 0.35 * classes, 24.0)
    figure = _figure(size + 1.5, size)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(classes)
    font = 8 if classes <= 30 else 5
    axes.set_xticks(ticks, class_names, rotation=90, fontsize=font)
    axes.set_yticks(ticks, class_names, fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if classes <= 20:
        for i in range(classes):
            for j in range(classes):
                if rates[i, j] >= 0.005:
                    axes.text(
                        j,
                        i,
                        f"{rates[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
    accuracy = float(np.mean(predictions == labels)) if len(labels) else 0.0
    axes.set_title(title or f"top-1 {100 * accuracy:.1f}% on {len(labels)}")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return _save(figure, path)


def log_images_to_tensorboard(logdir, images, step):
    """Writes PNG files as TensorBoard image summaries.

    Args:
        logdir: str, TensorBoard log directory (created).
        images: dict, summary name -> PNG path.
        step: int, the summaries' step.
    """
    import tensorflow as tf

    writer = tf.summary.create_file_writer(os.fspath(logdir))
    with writer.as_default():
        for name, png in images.items():
            data = tf.io.read_file(os.fspath(png))
            image = tf.io.decode_png(data, channels=4)
            tf.summary.image(name, image[None], step=step)
    writer.close()

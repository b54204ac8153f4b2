"""Features and labels of a dataset split from an encoder."""

import numpy as np
from keras import ops

from kskel.errors import KskelError


def check_compatible(model, manifest, source):
    """Raises `KskelError` when `model` cannot read `manifest`'s samples."""
    encoder = model.encoder
    if manifest["layout"] != encoder.layout:
        raise KskelError(
            f"{source}: the model expects the {encoder.layout!r} joint "
            f"layout, the dataset uses {manifest['layout']!r}."
        )
    if manifest["channels"] != encoder.in_channels:
        raise KskelError(
            f"{source}: the model expects {encoder.in_channels} channels, "
            f"the dataset has {manifest['channels']}."
        )


def extract(
    model, data_dir, split, *, stream="joint", batch_size=256, projection=False
):
    """Encoder features of every sample of a split, in eval mode.

    Args:
        model: a `SkeletonClassifier` (encoder + head).
        data_dir: dataset directory.
        split: split name.
        stream: "joint", "motion" or "bone".
        batch_size: int.
        projection: bool, return the head's output (the 128-d contrastive
            space of a pretraining network) instead of the pooled encoder
            features.

    Returns:
        `(features (N, D) float32, labels (N,) int32)`.
    """
    from kskel.data import pipeline
    from kskel.data import schema
    from kskel.data.streams import stream_fn

    manifest = schema.load_manifest(data_dir)
    check_compatible(model, manifest, data_dir)
    dataset = pipeline.make_dataset(
        data_dir,
        split,
        batch_size,
        training=False,
        stream_fn=stream_fn(stream, manifest["layout"]),
    )
    forward = model if projection else model.features
    features, labels = [], []
    for x, y in dataset:
        features.append(ops.convert_to_numpy(forward(x, training=False)))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels).astype(np.int32)

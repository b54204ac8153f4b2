"""Class-balanced labelled subsets for the semi-supervised protocol.

The official `Feeder_semi` (FACTS §8) keeps, for each class, `round(p *
n_class)` of its training samples, drawn with Python's `random.sample`
from the class's indices (classes in order of first appearance, the
global Python RNG seeded 0 at start-up), then sorts the kept indices.
`class_balanced_subset` follows the same algorithm with its own
`random.Random(seed)`; `subset_dataset` feeds the kept records to
`keras.Model.fit` without holding the whole split in memory.
"""

import random

import numpy as np

from kskel.errors import KskelError


def class_balanced_subset(labels, fraction, seed=0):
    """Sorted indices of a class-balanced subset of `labels`.

    For each class `c`, in order of first appearance in `labels` (the
    official feeder's dict order), `k_c = max(1, round(fraction * n_c))` of
    its indices are drawn with `random.Random(seed).sample`; `round` is
    Python's (halves to even), as in the official code. The official feeder
    keeps `round(fraction * n_c)`, which is 0 for a class with fewer than
    `0.5 / fraction` samples (e.g. < 50 at 1 %); here every class keeps at
    least one sample (a deliberate difference: a class without a single
    labelled example cannot be learned). Where every class has at least
    `0.5 / fraction` samples (NTU: hundreds per class) the two agree;
    where the minimum applies, the later classes' draws differ too.

    Args:
        labels: sequence of int class indices, in the split's record order.
        fraction: float in (0, 1], `p`. 1 keeps every sample.
        seed: int, seed of the draw. Defaults to 0.

    Returns:
        int64 array of sorted, distinct record indices.

    Raises:
        ValueError: if `fraction` is outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(
            f"fraction must be in (0, 1]. Received: fraction={fraction}"
        )
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels), dtype=np.int64)
    by_class = {}
    for index, label in enumerate(labels.tolist()):
        by_class.setdefault(label, []).append(index)
    rng = random.Random(seed)
    chosen = []
    for indices in by_class.values():
        count = max(1, round(fraction * len(indices)))
        chosen.extend(rng.sample(indices, count))
    return np.array(sorted(chosen), dtype=np.int64)


def split_labels(data_dir, split):
    """`(labels (N,) int32, names list of str)` of a split, in record order.

    The order is the order in which the split was written, which is also
    the order of `make_dataset(..., training=False)`. Skeletons are read
    and dropped batch by batch, never held.

    Raises:
        KskelError: unknown or empty split, missing shard.
    """
    from kskel.data import pipeline

    records = pipeline.load_split(data_dir, split, shuffle=False)
    batches = records.map(lambda r: (r["label"], r["name"])).batch(4096)
    labels, names = [], []
    for label, name in batches.as_numpy_iterator():
        labels.append(label)
        names.extend(n.decode("utf-8") for n in name)
    return np.concatenate(labels).astype(np.int32), names


def subset_dataset(
    data_dir, split, indices, batch_size, *, seed=0, stream_fn=None
):
    """A training dataset of the records of `split` at `indices`.

    Records are enumerated in written order and filtered against a boolean
    mask, so only the kept samples stay in memory: they are cached after
    the first pass (about 30 kB each for NTU, 120 MB for NTU-60 x-sub at
    10 %), then reshuffled every pass. The last incomplete batch is dropped,
    as the official training loaders do.

    Args:
        data_dir: str, dataset directory.
        split: str, split name.
        indices: sorted int indices into the split (`class_balanced_subset`).
        batch_size: int >= 1.
        seed: int, shuffle seed. Defaults to 0.
        stream_fn: optional callable applied to each skeleton batch.

    Returns:
        `tf.data.Dataset` of `(x (N, M, T, V, C), labels (N,))` with a
        known cardinality of `len(indices) // batch_size` batches.

    Raises:
        KskelError: unknown or empty split, indices out of range, or fewer
            kept samples than `batch_size`.
    """
    import tensorflow as tf

    from kskel.data import pipeline
    from kskel.data import schema

    records = pipeline.load_split(data_dir, split, shuffle=False)
    splits = schema.load_manifest(data_dir)["splits"]
    num_samples = splits[split]["num_samples"]
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= num_samples):
        raise KskelError(
            f"{data_dir}: subset indices out of range for split {split!r} "
            f"with {num_samples} samples."
        )
    if len(indices) < batch_size:
        raise KskelError(
            f"--batch_size={batch_size}: the labelled subset has only "
            f"{len(indices)} samples; lower --batch_size or raise "
            "--label_fraction."
        )
    mask = np.zeros(num_samples, dtype=bool)
    mask[indices] = True
    mask = tf.constant(mask)
    kept = (
        records.enumerate()
        .filter(lambda i, r: tf.gather(mask, i))
        .map(lambda i, r: (r["skeleton"], r["label"]))
        .apply(tf.data.experimental.assert_cardinality(len(indices)))
        .cache()
        .shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size, drop_remainder=True)
    )
    if stream_fn is not None:
        kept = kept.map(
            lambda x, y: (stream_fn(x), y),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return kept.prefetch(tf.data.AUTOTUNE)

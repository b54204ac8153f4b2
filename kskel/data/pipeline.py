"""The `tf.data` input pipeline: manifest -> shards -> parsed batches.

Everything after the shard list runs as `tf.data` graph ops; no Python runs
per sample. `make_dataset` yields plain `tf.data.Dataset`s of `(x, y)`, so
`keras.Model.fit` consumes them on any backend.

Order in `make_dataset`:

    shards (shuffled and interleaved when training) -> cache -> shuffle
    (training) -> batch -> repeat -> parse -> views_fn -> stream_fn ->
    prefetch

Records are parsed a batch at a time (one `parse_example` per batch), which
costs less than parsing them one by one and gives the same batches.

Determinism: with an integer `seed` the shard order, the sample order and
the seeds handed to `views_fn` are the same in every run; they change from
one pass over the dataset (epoch) to the next.
"""

import math
import os

import tensorflow as tf

from kskel.data import schema
from kskel.errors import KskelError

AUTOTUNE = tf.data.AUTOTUNE

# Shards read at once when `num_parallel_reads` is AUTOTUNE. A fixed number
# (not the machine's core count) keeps the shuffled order machine-independent.
_DEFAULT_CYCLE_LENGTH = 16
# Upper bound on the memory of the default shuffle buffer.
_SHUFFLE_BUFFER_BYTES = 256 * 2**20
_MIN_SHUFFLE_BUFFER = 1024


def load_split(
    data_dir,
    split,
    *,
    shuffle,
    seed=None,
    cache=False,
    num_parallel_reads=AUTOTUNE,
    input_context=None,
):
    """A dataset of parsed samples of one split.

    Without `shuffle`, records come in the order they were written (shards
    are still read ahead in parallel). With `shuffle`, the shard order is
    shuffled every pass and records of `num_parallel_reads` shards are
    interleaved one by one; samples are not shuffled further here.

    Args:
        data_dir: str, dataset directory (with `manifest.json`).
        split: str, split name.
        shuffle: bool, shuffle the shard order and interleave shards.
        seed: int or None, seed of the shard shuffle; None is
            nondeterministic. Defaults to None.
        cache: bool or str, cache parsed samples in memory (True) or in
            files with this path prefix (str). Defaults to False.
        num_parallel_reads: int or `tf.data.AUTOTUNE`, shards read at once
            (AUTOTUNE means up to 16). Defaults to AUTOTUNE.
        input_context: optional `tf.distribute.InputContext`; the split is
            sharded by input pipeline (by shard files when there are enough,
            else by records).

    Returns:
        `tf.data.Dataset` of dicts as returned by `schema.parse_example`.

    Raises:
        KskelError: unknown or empty split, missing shard file, bad
            manifest.
    """
    manifest = schema.load_manifest(data_dir)
    records = _records(
        manifest,
        data_dir,
        split,
        shuffle=shuffle,
        seed=seed,
        num_parallel_reads=num_parallel_reads,
        input_context=input_context,
    )

    def parse(record):
        return schema.parse_example(record, manifest)

    dataset = records.map(
        parse, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return _cached(dataset, cache)


def _cached(dataset, cache):
    if not cache:
        return dataset
    return dataset.cache("" if cache is True else os.fspath(cache))


def _split_entry(manifest, data_dir, split):
    splits = manifest["splits"]
    if split not in splits:
        raise KskelError(
            f"{data_dir}: no split {split!r}; the dataset has "
            f"{', '.join(sorted(splits)) or 'no splits'}."
        )
    entry = splits[split]
    if entry["num_samples"] == 0:
        raise KskelError(
            f"{data_dir}: split {split!r} has no samples (see the "
            "manifest's 'skipped' for samples left out when it was written)."
        )
    return entry


def _records(
    manifest,
    data_dir,
    split,
    *,
    shuffle,
    seed,
    num_parallel_reads,
    input_context,
):
    entry = _split_entry(manifest, data_dir, split)
    paths = []
    for shard in entry["shards"]:
        path = tf.io.gfile.join(os.fspath(data_dir), shard["file"])
        if not tf.io.gfile.exists(path):
            raise KskelError(
                f"{path}: shard listed in the manifest is missing; run "
                f"python -m data_prep.validate --data {data_dir}."
            )
        paths.append(path)
    counts = [shard["num_samples"] for shard in entry["shards"]]
    pipelines, pipeline_id = _pipelines(input_context)
    files = tf.data.Dataset.from_tensor_slices(paths)
    by_file = pipelines > 1 and len(paths) >= pipelines
    if by_file:
        # Shard the fixed file list before shuffling, so that workers with
        # different shuffle seeds still read disjoint files.
        files = files.shard(pipelines, pipeline_id)
        paths = paths[pipeline_id::pipelines]
        counts = counts[pipeline_id::pipelines]
    cycle_length = _cycle_length(num_parallel_reads, len(paths))
    if shuffle:
        files = files.shuffle(len(paths), seed=seed)
        block_length = 1
    else:
        # Every shard but the last of a split holds exactly this many
        # records, so whole blocks reproduce the written order.
        block_length = max(counts)
    compression = manifest["compression"]
    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression),
        cycle_length=cycle_length,
        block_length=block_length,
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    num_records = sum(counts)
    if pipelines > 1 and not by_file:
        records = records.shard(pipelines, pipeline_id)
        num_records = len(range(pipeline_id, num_records, pipelines))
    # A known size lets Keras plan epochs and show progress, and a shard
    # that holds fewer or more records than the manifest says fails loudly.
    return records.apply(tf.data.experimental.assert_cardinality(num_records))


def _pipelines(input_context):
    if input_context is None:
        return 1, 0
    return input_context.num_input_pipelines, input_context.input_pipeline_id


def _cycle_length(num_parallel_reads, num_files):
    if num_parallel_reads == AUTOTUNE:
        return min(_DEFAULT_CYCLE_LENGTH, num_files)
    if (
        isinstance(num_parallel_reads, bool)
        or not isinstance(num_parallel_reads, int)
        or num_parallel_reads < 1
    ):
        raise KskelError(
            "num_parallel_reads must be an int >= 1 or tf.data.AUTOTUNE, got "
            f"{num_parallel_reads!r}."
        )
    return min(num_parallel_reads, num_files)


def _default_shuffle_buffer(manifest, num_samples):
    sample_bytes = 4 * math.prod(schema.sample_shape(manifest))
    by_memory = max(_MIN_SHUFFLE_BUFFER, _SHUFFLE_BUFFER_BYTES // sample_bytes)
    return max(1, min(num_samples, by_memory))


def make_dataset(
    data_dir,
    split,
    batch_size,
    *,
    training,
    seed=0,
    views_fn=None,
    stream_fn=None,
    drop_remainder=None,
    repeat=False,
    cache=False,
    input_context=None,
    with_labels=True,
    shuffle_buffer=None,
    num_parallel_reads=AUTOTUNE,
):
    """A batched, prefetched dataset ready for `keras.Model.fit`.

    `views_fn(skeleton_batch, seed)` receives a whole batch `(N, M, T, V, C)`
    and an int64 `[2]` stateless seed that depends only on `seed`, the pass
    over the dataset, the batch's position in it and the input pipeline; it
    returns one tensor or a tuple of views. `stream_fn(tensor)` (e.g. joint
    -> bone) is then applied to each view, i.e. after augmentation.

    Args:
        data_dir: str, dataset directory.
        split: str, split name.
        batch_size: int, global batch size; with `input_context` each input
            pipeline batches its per-replica share.
        training: bool, shuffle shards and samples; also the default of
            `drop_remainder`.
        seed: int or None, seed of every shuffle and of the `views_fn`
            seeds; None is nondeterministic. Defaults to 0.
        views_fn: optional callable `(batch, seed) -> tensor or tuple`.
        stream_fn: optional callable `tensor -> tensor`, applied per view.
        drop_remainder: bool or None, drop a last smaller batch; None means
            `training` (the official train loaders drop it).
        repeat: bool, repeat forever (one pass per epoch, reshuffled).
            Defaults to False.
        cache: bool or str, cache the split's records after the first pass,
            in memory (True) or in files with this path prefix (str).
            Defaults to False.
        input_context: optional `tf.distribute.InputContext`.
        with_labels: bool, yield `(x, y)`; False yields `x` only.
        shuffle_buffer: int or None, samples in the shuffle buffer; None
            uses the whole split, capped to about 256 MiB of samples.
        num_parallel_reads: int or AUTOTUNE, see `load_split`.

    Returns:
        `tf.data.Dataset` of `(x, y)` or `x`: `x` the skeleton batch
        `(N, M, T, V, C)` float32 or the tuple of views, `y` int32 labels
        `(N,)`.

    Raises:
        KskelError: bad batch size or shuffle buffer, unknown or empty split,
            bad manifest.
    """
    _check_positive(batch_size, "batch_size")
    if shuffle_buffer is not None:
        _check_positive(shuffle_buffer, "shuffle_buffer")
    if drop_remainder is None:
        drop_remainder = training
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    manifest = schema.load_manifest(data_dir)
    records = _records(
        manifest,
        data_dir,
        split,
        shuffle=training,
        seed=seed,
        num_parallel_reads=num_parallel_reads,
        input_context=input_context,
    )
    dataset = _cached(records, cache)
    if training:
        if shuffle_buffer is None:
            num_samples = manifest["splits"][split]["num_samples"]
            shuffle_buffer = _default_shuffle_buffer(manifest, num_samples)
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if repeat:
        dataset = dataset.repeat()
    pipeline_id = _pipelines(input_context)[1]
    # One random int64 per batch, rerandomized (deterministically, given
    # `seed`) on every pass, so augmentations differ between epochs even
    # when Keras re-iterates a non-repeating dataset.
    batch_seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    )
    dataset = tf.data.Dataset.zip(dataset, batch_seeds)
    to_inputs = _model_inputs(
        manifest, views_fn, stream_fn, with_labels, pipeline_id
    )
    dataset = dataset.map(
        to_inputs, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return dataset.prefetch(AUTOTUNE)


def _check_positive(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise KskelError(f"{what} must be an int >= 1, got {value!r}.")


def _model_inputs(manifest, views_fn, stream_fn, with_labels, pipeline_id):
    def to_inputs(records, random_value):
        batch = schema.parse_example(records, manifest)
        x = batch["skeleton"]
        if views_fn is not None:
            seed = tf.stack([random_value, tf.constant(pipeline_id, tf.int64)])
            x = views_fn(x, seed)
            if isinstance(x, list):
                x = tuple(x)
        if stream_fn is not None:
            x = tf.nest.map_structure(stream_fn, x)
        if with_labels:
            return x, batch["label"]
        return x

    return to_inputs


def distributed_dataset(strategy, data_dir, split, global_batch_size, **kw):
    """`make_dataset` for every input pipeline of a `tf.distribute` strategy.

    Args:
        strategy: `tf.distribute.Strategy`.
        data_dir: str, dataset directory.
        split: str, split name.
        global_batch_size: int, batch size summed over replicas.
        **kw: keyword arguments of `make_dataset` (not `input_context`).

    Returns:
        `tf.distribute.DistributedDataset`.
    """
    if "input_context" in kw:
        raise KskelError(
            "distributed_dataset sets input_context itself; do not pass it."
        )

    def dataset_fn(input_context):
        return make_dataset(
            data_dir,
            split,
            global_batch_size,
            input_context=input_context,
            **kw,
        )

    return strategy.distribute_datasets_from_function(dataset_fn)

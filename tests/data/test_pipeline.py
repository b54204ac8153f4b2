"""The tf.data pipeline: order, batching, determinism, views, distribution."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel.data import pipeline
from kskel.data import schema
from kskel.errors import KskelError

SHAPE = (2, 3, 25, 3)
NUM_SAMPLES = 10


def sample(i):
    # Every value of sample i equals i, so values identify samples.
    return schema.Sample(
        skeleton=np.full(SHAPE, i, np.float32),
        label=i % 4,
        name=f"n{i:02d}",
        num_frames=3,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    schema.write_dataset(
        str(out),
        {
            "train": (sample(i) for i in range(NUM_SAMPLES)),
            "empty": [],
        },
        layout="ntu25",
        class_names=["a", "b", "c", "d"],
        preprocessing={},
        samples_per_shard=3,
    )
    return str(out)


def ids(dataset):
    """Sample ids (the constant value of each skeleton) per batch."""
    out = []
    for x, _ in dataset:
        out.append([int(v) for v in x[:, 0, 0, 0, 0].numpy()])
    return out


def test_load_split_keeps_written_order(data_dir):
    dataset = pipeline.load_split(data_dir, "train", shuffle=False)
    names = [s["name"].numpy().decode() for s in dataset]
    assert names == [f"n{i:02d}" for i in range(NUM_SAMPLES)]
    first = next(iter(dataset))
    assert first["skeleton"].shape == SHAPE
    assert first["label"].dtype == tf.int32


def test_load_split_cache_replays_the_same_samples(data_dir, tmp_path):
    for cache in (True, str(tmp_path / "cache")):
        dataset = pipeline.load_split(
            data_dir, "train", shuffle=False, cache=cache
        )
        first = [s["name"].numpy() for s in dataset]
        assert [s["name"].numpy() for s in dataset] == first
        assert len(first) == NUM_SAMPLES


def test_load_split_shuffled_reads_every_sample_once(data_dir):
    dataset = pipeline.load_split(
        data_dir, "train", shuffle=True, seed=3, num_parallel_reads=2
    )
    labels = [int(s["skeleton"][0, 0, 0, 0]) for s in dataset]
    assert sorted(labels) == list(range(NUM_SAMPLES))


def test_unknown_and_empty_split(data_dir):
    with pytest.raises(KskelError, match="no split 'val'.*empty, train"):
        pipeline.load_split(data_dir, "val", shuffle=False)
    with pytest.raises(KskelError, match="split .empty. has no samples"):
        pipeline.make_dataset(data_dir, "empty", 2, training=False)


def test_eval_batches_keep_remainder(data_dir):
    dataset = pipeline.make_dataset(data_dir, "train", 4, training=False)
    assert ids(dataset) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert int(dataset.cardinality()) == 3
    x, y = next(iter(dataset))
    assert x.shape == (4,) + SHAPE
    assert x.dtype == tf.float32
    np.testing.assert_array_equal(y.numpy(), [0, 1, 2, 3])


def test_training_drops_remainder_and_shuffles(data_dir):
    dataset = pipeline.make_dataset(data_dir, "train", 4, training=True)
    batches = ids(dataset)
    assert [len(b) for b in batches] == [4, 4]
    assert int(dataset.cardinality()) == 2
    # A static batch size (drop_remainder) survives the batched parse.
    assert dataset.element_spec[0].shape == (4,) + SHAPE
    flat = sum(batches, [])
    assert len(set(flat)) == 8
    keep = pipeline.make_dataset(
        data_dir, "train", 4, training=True, drop_remainder=False
    )
    assert sorted(sum(ids(keep), [])) == list(range(NUM_SAMPLES))


def test_seeded_order_is_deterministic(data_dir):
    def run(seed):
        dataset = pipeline.make_dataset(
            data_dir, "train", 5, training=True, seed=seed
        )
        return [ids(dataset), ids(dataset)]  # two epochs

    first, again = run(1), run(1)
    assert first == again
    assert first[0] != first[1]  # reshuffled between epochs
    assert run(2) != first
    assert sorted(sum(first[0], [])) == list(range(NUM_SAMPLES))


def test_views_fn_gets_batches_and_deterministic_seeds(data_dir):
    def views_fn(batch, seed):
        assert batch.shape.rank == 5  # whole batches, not samples
        noise = tf.random.stateless_uniform(tf.shape(batch), seed)
        return batch + noise, batch * 2.0

    def run(seed):
        dataset = pipeline.make_dataset(
            data_dir,
            "train",
            5,
            training=True,
            seed=seed,
            views_fn=views_fn,
            repeat=True,
        )
        return [
            (v1.numpy(), v2.numpy(), y.numpy())
            for (v1, v2), y in dataset.take(4)
        ]

    first, again = run(4), run(4)
    for (a1, a2, ya), (b1, b2, yb) in zip(first, again):
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
        np.testing.assert_array_equal(ya, yb)
    v1, v2, y = first[0]
    assert v1.shape == v2.shape == (5,) + SHAPE
    base = v2 / 2.0
    np.testing.assert_array_equal(y, base[:, 0, 0, 0, 0] % 4)
    noise = v1 - base
    assert np.all((noise >= 0) & (noise < 1))
    # Different batches (incl. the second pass) get different seeds.
    noises = [r[0] - r[1] / 2.0 for r in first]
    assert not np.allclose(noises[0], noises[2])


def test_stream_fn_applies_to_each_view_and_no_labels(data_dir):
    dataset = pipeline.make_dataset(
        data_dir,
        "train",
        4,
        training=False,
        views_fn=lambda x, seed: (x, x + 1.0),
        stream_fn=lambda x: x * 10.0,
        with_labels=False,
    )
    first, second = next(iter(dataset))
    np.testing.assert_array_equal(first[:, 0, 0, 0, 0], [0, 10, 20, 30])
    np.testing.assert_array_equal(second[:, 0, 0, 0, 0], [10, 20, 30, 40])


def test_repeat_continues_past_one_epoch(data_dir):
    dataset = pipeline.make_dataset(
        data_dir, "train", 4, training=True, repeat=True, seed=None
    )
    batches = ids(dataset.take(7))
    assert len(batches) == 7
    assert all(len(set(b)) == 4 for b in batches)


def test_input_context_shards_and_splits_the_batch(data_dir):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2,
            input_pipeline_id=pipeline_id,
            num_replicas_in_sync=2,
        )
        dataset = pipeline.make_dataset(
            data_dir, "train", 4, training=False, input_context=context
        )
        batches = ids(dataset)
        assert all(len(b) <= 2 for b in batches)
        seen.append(sum(batches, []))
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(NUM_SAMPLES))


def test_distributed_dataset_default_strategy(data_dir):
    strategy = tf.distribute.get_strategy()
    dataset = pipeline.distributed_dataset(
        strategy, data_dir, "train", 4, training=False
    )
    assert ids(dataset) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_bad_batch_size(data_dir):
    with pytest.raises(KskelError, match="batch_size"):
        pipeline.make_dataset(data_dir, "train", 0, training=True)


def test_keras_fit_consumes_the_dataset(data_dir):
    dataset = pipeline.make_dataset(data_dir, "train", 4, training=True)
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"]).all()

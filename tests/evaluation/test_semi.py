"""Class-balanced labelled subsets (FACTS §8 Feeder_semi) and their data."""

import collections
import random

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.evaluation import semi

# Class sizes 25, 15, 5, 1, interleaved so that first appearance is
# 2, 0, 1, 3 and indices of one class are not contiguous.
LABELS = np.array(
    [2, 0, 1] * 5 + [0, 1] * 10 + [0] * 10 + [3],
    dtype=np.int32,
)


def _official(labels, fraction, seed):
    """Feeder_semi as written: dict of classes, random.sample, sort."""
    rng = random.Random(seed)
    by_class = {}
    for i, label in enumerate(labels.tolist()):
        by_class.setdefault(label, []).append(i)
    chosen = []
    for indices in by_class.values():
        chosen += rng.sample(indices, round(fraction * len(indices)))
    return sorted(chosen)


@pytest.mark.parametrize(
    "fraction, expected",
    [
        # round() halves to even: 2.5 -> 2, 1.5 -> 2, 0.5 -> 0 -> min 1.
        (0.1, {0: 2, 1: 2, 2: 1, 3: 1}),
        # 7.5 -> 8, 4.5 -> 4, 1.5 -> 2, 0.3 -> 0 -> min 1.
        (0.3, {0: 8, 1: 4, 2: 2, 3: 1}),
        (1.0, {0: 25, 1: 15, 2: 5, 3: 1}),
    ],
)
def test_counts_per_class_are_round_p_n(fraction, expected):
    indices = semi.class_balanced_subset(LABELS, fraction, seed=0)
    assert collections.Counter(LABELS[indices].tolist()) == expected
    assert np.all(np.diff(indices) > 0)  # Sorted and distinct.
    assert indices.min() >= 0 and indices.max() < len(LABELS)


def test_matches_the_official_draw_when_no_class_is_raised_to_one():
    labels = np.repeat([3, 1, 0, 2], [40, 30, 20, 10])
    labels = labels[np.random.default_rng(0).permutation(100)]
    for seed in (0, 1, 7):
        ours = semi.class_balanced_subset(labels, 0.3, seed=seed)
        assert ours.tolist() == _official(labels, 0.3, seed)


def test_deterministic_per_seed_and_seeds_differ():
    a = semi.class_balanced_subset(LABELS, 0.3, seed=0)
    b = semi.class_balanced_subset(LABELS, 0.3, seed=0)
    c = semi.class_balanced_subset(LABELS, 0.3, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.tolist() != c.tolist()
    assert len(a) == len(c)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        semi.class_balanced_subset(LABELS, fraction)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from data_prep import synthetic

    out = tmp_path_factory.mktemp("semi") / "data"
    synthetic.generate_dataset(str(out), 120, seed=0)
    return str(out)


def _split(data, split):
    from kskel.data import pipeline

    records = list(
        pipeline.load_split(data, split, shuffle=False).as_numpy_iterator()
    )
    skeletons = np.stack([r["skeleton"] for r in records])
    labels = np.array([r["label"] for r in records])
    names = [r["name"].decode() for r in records]
    return skeletons, labels, names


def test_split_labels_in_record_order(data):
    from kskel.data import schema

    _, labels, names = _split(data, "train")
    got_labels, got_names = semi.split_labels(data, "train")
    np.testing.assert_array_equal(got_labels, labels)
    assert got_names == names
    assert got_labels.dtype == np.int32
    splits = schema.load_manifest(data)["splits"]
    assert len(names) == splits["train"]["num_samples"]


def test_subset_dataset_yields_exactly_the_chosen_train_records(data):
    skeletons, labels, _ = _split(data, "train")
    test_skeletons, _, _ = _split(data, "test")
    indices = semi.class_balanced_subset(labels, 0.25, seed=3)
    batch = 4
    dataset = semi.subset_dataset(data, "train", indices, batch, seed=0)
    assert int(dataset.cardinality()) == len(indices) // batch

    def one_pass():
        xs, ys = zip(*dataset.as_numpy_iterator())
        return np.concatenate(xs), np.concatenate(ys)

    x, y = one_pass()
    assert x.shape == (len(indices) // batch * batch, *skeletons.shape[1:])
    # Every yielded sample is one chosen train record with its label.
    flat = skeletons.reshape(len(skeletons), -1)
    for sample, label in zip(x, y):
        match = np.flatnonzero(np.all(flat == sample.reshape(-1), axis=1))
        assert len(match) == 1 and match[0] in set(indices.tolist())
        assert labels[match[0]] == label
    # None of them is a test record.
    test_flat = test_skeletons.reshape(len(test_skeletons), -1)
    assert not any((test_flat == s.reshape(-1)).all(1).any() for s in x)
    # The next pass is reshuffled.
    x2, _ = one_pass()
    assert not np.array_equal(x, x2)


def test_subset_smaller_than_batch_is_an_error(data):
    with pytest.raises(KskelError, match="--batch_size=64"):
        semi.subset_dataset(data, "train", [0, 1, 2], 64)


def test_unknown_split_is_an_error(data):
    with pytest.raises(KskelError, match="no split 'nope'"):
        semi.split_labels(data, "nope")

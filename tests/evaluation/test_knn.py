"""Weighted KNN against a direct numpy implementation."""

import numpy as np
import pytest

from kskel.evaluation.knn import knn_predict
from kskel.evaluation.knn import topk_accuracy


def _reference(bank, labels, queries, num_classes, k, t):
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = np.zeros((len(queries), num_classes))
    for i, q in enumerate(queries):
        sim = bank @ q
        for j in np.argsort(-sim)[:k]:
            scores[i, labels[j]] += np.exp(sim[j] / t)
    return scores


@pytest.mark.parametrize("k", [1, 5, 40])
def test_matches_reference(rng, k):
    bank = rng.normal(size=(30, 6)).astype("float32")
    labels = rng.integers(0, 4, size=30)
    queries = rng.normal(size=(9, 6)).astype("float32")
    got = knn_predict(bank, labels, queries, 4, k=k, chunk=4)
    expected = _reference(bank, labels, queries, 4, min(k, 30), 0.1)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_separable_clusters_are_classified_and_topk():
    centers = np.eye(3, dtype="float32") * 10
    rng = np.random.default_rng(1)
    bank = np.repeat(centers, 10, axis=0) + rng.normal(size=(30, 3))
    labels = np.repeat(np.arange(3), 10)
    queries = centers + rng.normal(size=(3, 3))
    scores = knn_predict(bank, labels, queries, 3, k=5)
    assert topk_accuracy(scores, np.arange(3)) == 1.0
    assert topk_accuracy(-scores, np.arange(3), k=3) == 1.0
    assert topk_accuracy(-scores, np.arange(3), k=1) == 0.0

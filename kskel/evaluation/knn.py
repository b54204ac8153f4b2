"""Weighted k-nearest-neighbour classification on L2-normalised features.

The official ActCLR KNN monitor (FACTS §7.5): cosine similarity to the
training bank, the top-k neighbours vote with weights `exp(sim / t)`, the
class with the largest summed weight wins; k in {10, 20, 40}, t = 0.1.
"""

import numpy as np


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_predict(
    bank,
    bank_labels,
    queries,
    num_classes,
    k=20,
    temperature=0.1,
    chunk=1024,
):
    """Per-class vote scores `(num_queries, num_classes)`.

    Args:
        bank: (N, D) training features.
        bank_labels: (N,) int labels.
        queries: (Q, D) features to classify.
        num_classes: int.
        k: int, neighbours (clipped to N).
        temperature: float.
        chunk: queries scored at once (bounds memory).
    """
    bank = _normalize(np.asarray(bank, np.float32))
    queries = _normalize(np.asarray(queries, np.float32))
    k = min(k, len(bank))
    scores = np.zeros((len(queries), num_classes), np.float64)
    for start in range(0, len(queries), chunk):
        sim = queries[start : start + chunk] @ bank.T
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sim, top, axis=1)
        weights = np.exp(top_sim / temperature)
        rows = np.arange(len(top))[:, None]
        np.add.at(
            scores[start : start + chunk], (rows, bank_labels[top]), weights
        )
    return scores


def topk_accuracy(scores, labels, k=1):
    """Fraction of rows whose label is among the k best scores."""
    best = np.argsort(-scores, axis=1)[:, :k]
    return float(np.mean(np.any(best == np.asarray(labels)[:, None], axis=1)))

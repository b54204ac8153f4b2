"""Exact t-SNE: perplexity calibration, gradient, cluster preservation."""

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.evaluation import tsne


def _entropy(rows):
    safe = np.where(rows > 0, rows, 1.0)
    return -np.sum(rows * np.log(safe), axis=1)


@pytest.mark.parametrize("perplexity", [2.5, 8.0, 20.0])
def test_row_entropies_match_log_perplexity(rng, perplexity):
    x = rng.normal(size=(60, 5)) * rng.uniform(0.1, 10.0, size=(60, 1))
    p = tsne.conditional_probabilities(
        tsne.pairwise_sq_distances(x), perplexity
    )
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(p), 0.0)
    np.testing.assert_allclose(_entropy(p), np.log(perplexity), atol=1e-4)


def test_conditional_probabilities_are_gaussian_in_distance():
    # Row 0 sees points at squared distances 1, 4 and 9: p_{j|0} must be
    # proportional to exp(-beta d) for one beta.
    distances = np.array(
        [[0, 1, 4, 9], [1, 0, 1, 4], [4, 1, 0, 1], [9, 4, 1, 0]], float
    )
    p = tsne.conditional_probabilities(distances, 2.0)
    beta = np.log(p[0, 1] / p[0, 2]) / 3.0
    assert beta > 0
    np.testing.assert_allclose(np.log(p[0, 2] / p[0, 3]), 5.0 * beta, rtol=1e-9)


def test_joint_probabilities_symmetric_and_normalised(rng):
    p = tsne.joint_probabilities(rng.normal(size=(30, 4)), 5.0)
    np.testing.assert_allclose(p, p.T)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)


def _kl(p, y):
    d = tsne.pairwise_sq_distances(y)
    w = 1.0 / (1.0 + d)
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = ~np.eye(len(y), dtype=bool)
    return np.sum(p[mask] * np.log(p[mask] / q[mask]))


def test_gradient_matches_finite_differences(rng):
    x = rng.normal(size=(7, 3))
    p = tsne.joint_probabilities(x, 3.0)
    np.fill_diagonal(p, 0.0)
    y = rng.normal(size=(7, 2))
    grad = tsne._gradient(p, y, 1.0, block=3)
    numeric = np.zeros_like(y)
    eps = 1e-6
    for index in np.ndindex(*y.shape):
        step = np.zeros_like(y)
        step[index] = eps
        numeric[index] = (_kl(p, y + step) - _kl(p, y - step)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def _clusters(rng, per_cluster=30):
    centres = 20.0 * np.eye(3, 10)
    labels = np.repeat(np.arange(3), per_cluster)
    x = centres[labels] + rng.normal(size=(len(labels), 10))
    return x, labels


def test_separated_clusters_stay_separated(rng):
    x, labels = _clusters(rng)
    y = tsne.tsne(x, perplexity=10.0, seed=0)
    assert y.shape == (90, 2) and np.isfinite(y).all()
    # Leave-one-out 5-NN accuracy in the embedding.
    d = tsne.pairwise_sq_distances(y)
    np.fill_diagonal(d, np.inf)
    neighbours = labels[np.argsort(d, axis=1)[:, :5]]
    votes = np.array([np.bincount(row, minlength=3) for row in neighbours])
    assert np.mean(votes.argmax(axis=1) == labels) == 1.0
    # Every cluster is farther from the others than it is wide.
    centres = np.stack([y[labels == k].mean(0) for k in range(3)])
    spread = max(
        np.linalg.norm(y[labels == k] - centres[k], axis=1).max()
        for k in range(3)
    )
    gaps = tsne.pairwise_sq_distances(centres)[np.triu_indices(3, 1)]
    assert np.sqrt(gaps.min()) > spread


def test_deterministic_per_seed(rng):
    x, _ = _clusters(rng, per_cluster=8)
    first = tsne.tsne(x, perplexity=5.0, iterations=100, seed=3)
    again = tsne.tsne(x, perplexity=5.0, iterations=100, seed=3)
    other = tsne.tsne(x, perplexity=5.0, iterations=100, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_pca_keeps_fifty_dimensions(rng):
    # Rank <= 50 data: the top 50 principal axes span it, so they keep
    # every centred row's length (the 50 smallest axes would not).
    x = rng.normal(size=(60, 50)) @ rng.normal(size=(50, 80))
    reduced = tsne.pca(x, 50)
    assert reduced.shape == (60, 50)
    centred = x - x.mean(0)
    np.testing.assert_allclose(
        np.linalg.norm(reduced, axis=1),
        np.linalg.norm(centred, axis=1),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "x, perplexity, match",
    [
        (np.zeros((3, 2)), 2.0, "n >= 4"),
        (np.full((6, 2), np.nan), 2.0, "non-finite"),
        (np.arange(12.0).reshape(6, 2), 6.0, "perplexity"),
    ],
)
def test_bad_inputs(x, perplexity, match):
    with pytest.raises(KskelError, match=match):
        tsne.tsne(x, perplexity=perplexity, iterations=1)

"""Exact t-SNE in NumPy, for pictures of a few thousand feature vectors.

The algorithm of van der Maaten & Hinton (2008), as in their reference
`tsne.py`: Gaussian input affinities whose bandwidth is found per point by
a binary search on the perplexity, symmetrised; Student-t output
affinities; gradient descent with momentum (0.5 for the first 250
iterations, then 0.8), the adaptive gains of Jacobs (1988) and early
exaggeration (P times 4 for the first 50 iterations). Inputs wider than 50
dimensions are first reduced to 50 by PCA, as in the paper.

Time is O(n^2) per iteration and memory O(n^2) (P, float32); 2000 points
take about 20 s of one CPU core for 1000 iterations. The result depends
only on the inputs and the seed.

Reference: van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR
9 (2008), 2579-2605.
"""

import numpy as np

from kskel.errors import KskelError

PCA_DIMS = 50
_TINY = 1e-12
# Rows per block of the gradient: a (64, n) float32 block of a 2000-point
# embedding is 0.5 MB, well inside the L2 cache.
_BLOCK = 64


def pairwise_sq_distances(x):
    """(n, n) float64 squared Euclidean distances, zero diagonal."""
    x = np.asarray(x, np.float64)
    sq = np.sum(x * x, axis=1)
    distances = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(distances, 0.0, out=distances)
    np.fill_diagonal(distances, 0.0)
    return distances


def conditional_probabilities(distances, perplexity, tol=1e-5, max_steps=200):
    """Row-wise Gaussian affinities p_{j|i} with a given perplexity.

    For each row i, the precision beta_i of `p_{j|i} ~ exp(-beta_i d_ij)`
    is found by bisection so that the row's Shannon entropy (natural log)
    equals `log(perplexity)`. All rows are searched at once.

    Args:
        distances: (n, n) squared distances; the diagonal is ignored.
        perplexity: float, 1 < perplexity < n.
        tol: float, tolerance on the entropy (nats). Defaults to 1e-5.
        max_steps: int, bisection steps. Defaults to 200.

    Returns:
        (n, n) float64 array, rows summing to 1, zero diagonal.

    Raises:
        KskelError: perplexity out of range.
    """
    distances = np.asarray(distances, np.float64)
    n = distances.shape[0]
    if not 1.0 < perplexity < n:
        raise KskelError(
            f"t-SNE perplexity must be in (1, {n}) for {n} points, got "
            f"{perplexity}."
        )
    off_diagonal = ~np.eye(n, dtype=bool)
    # Shifting a row by its smallest distance leaves p_{j|i} unchanged and
    # keeps exp() from underflowing for far-away points.
    nearest = np.where(off_diagonal, distances, np.inf).min(axis=1)
    d = np.where(off_diagonal, distances - nearest[:, None], 0.0)
    target = np.log(perplexity)
    beta = np.ones(n)
    low = np.zeros(n)
    high = np.full(n, np.inf)
    for _ in range(max_steps):
        p, entropy = _row_entropy(d, beta, off_diagonal)
        error = entropy - target
        if np.all(np.abs(error) < tol):
            break
        # Entropy falls as beta grows: too high an entropy -> raise beta.
        up = error > 0
        low = np.where(up, beta, low)
        high = np.where(up, high, beta)
        beta = np.where(np.isinf(high), beta * 2.0, (low + high) / 2.0)
    return p


def _row_entropy(d, beta, off_diagonal):
    """Rows p_{j|i} for precisions beta and their entropies (nats)."""
    p = np.exp(-d * beta[:, None]) * off_diagonal
    total = p.sum(axis=1, keepdims=True)
    p /= total
    return p, np.log(total[:, 0]) + beta * np.sum(d * p, axis=1)


def joint_probabilities(x, perplexity):
    """Symmetric P = (P_cond + P_cond^T) / 2n, floored at 1e-12."""
    conditional = conditional_probabilities(
        pairwise_sq_distances(x), perplexity
    )
    p = (conditional + conditional.T) / (2.0 * conditional.shape[0])
    return np.maximum(p, _TINY)


def pca(x, dims):
    """Projection of centred x onto its first `dims` principal axes."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    if x.shape[1] <= dims:
        return x
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:dims].T


def tsne(
    x,
    *,
    dims=2,
    perplexity=30.0,
    iterations=1000,
    learning_rate=100.0,
    exaggeration=4.0,
    exaggeration_iterations=50,
    momentum=(0.5, 0.8),
    momentum_switch=250,
    seed=0,
):
    """Embeds the rows of x in `dims` dimensions with exact t-SNE.

    Args:
        x: (n, d) array, n >= 4 finite rows.
        dims: int, output dimensions. Defaults to 2.
        perplexity: float in (1, n). Defaults to 30.
        iterations: int, gradient steps. Defaults to 1000.
        learning_rate: float. Defaults to 100 (the paper's).
        exaggeration: float, factor on P during the first
            `exaggeration_iterations` steps. Defaults to 4.
        exaggeration_iterations: int. Defaults to 50.
        momentum: (initial, final) momentum. Defaults to (0.5, 0.8).
        momentum_switch: int, step at which the final momentum starts.
            Defaults to 250.
        seed: int, seed of the initial embedding N(0, 1e-4 I).

    Returns:
        (n, dims) float64 embedding.

    Raises:
        KskelError: too few points, non-finite values, bad perplexity.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise KskelError(
            f"t-SNE needs an (n, d) array with n >= 4, got shape {x.shape}."
        )
    if not np.isfinite(x).all():
        raise KskelError("t-SNE input has non-finite values (NaN/Inf).")
    p = joint_probabilities(pca(x, PCA_DIMS), perplexity).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = (1e-2 * rng.standard_normal((x.shape[0], dims))).astype(np.float32)
    velocity = np.zeros_like(y)
    gains = np.ones_like(y)
    for step in range(iterations):
        scale = exaggeration if step < exaggeration_iterations else 1.0
        grad = _gradient(p, y, scale)
        # Jacobs' gains: grow where the gradient keeps its direction.
        same = np.sign(grad) == np.sign(velocity)
        gains = np.where(same, gains * 0.8, gains + 0.2)
        np.maximum(gains, 0.01, out=gains)
        mom = momentum[0] if step < momentum_switch else momentum[1]
        velocity = mom * velocity - learning_rate * gains * grad
        y += velocity
        y -= y.mean(axis=0)
    return y.astype(np.float64)


def _gradient(p, y, scale, block=_BLOCK):
    """dC/dy of KL(scale P || Q), computed block of rows by block of rows.

    `dC/dy_i = 4 sum_j (scale p_ij - w_ij / Z) w_ij (y_i - y_j)` with the
    Student-t kernel `w_ij = 1 / (1 + |y_i - y_j|^2)` and `Z = sum_{i!=j}
    w_ij`. The two sums are accumulated per block, so the (n, n) kernel is
    never stored and each block stays in the CPU cache; only elementwise
    NumPy is used (a BLAS matrix-vector product with a 2-column operand is
    slower, and multithreaded BLAS stalls on a busy machine).
    """
    n = y.shape[0]
    cols = [np.ascontiguousarray(y[:, k]) for k in range(y.shape[1])]
    attract = np.zeros_like(y)
    repulse = np.zeros_like(y)
    total = 0.0
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        diffs = [c[rows, None] - c[None, :] for c in cols]
        w = diffs[0] * diffs[0]
        for diff in diffs[1:]:
            w += diff * diff
        w += 1.0
        np.reciprocal(w, out=w)
        total += float(w.sum())
        pw = p[rows] * w
        w *= w
        for k, diff in enumerate(diffs):
            attract[rows, k] = np.einsum("ij,ij->i", pw, diff)
            repulse[rows, k] = np.einsum("ij,ij->i", w, diff)
    # The diagonal kernel entries are exactly 1 (zero distance).
    z = total - n
    return 4.0 * (scale * attract - repulse / z)

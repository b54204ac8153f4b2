"""Contrastive losses as pure functions (`keras.ops`, any backend)."""

from keras import ops


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """`x / max(||x||, epsilon)`, as `torch.nn.functional.normalize`."""
    norm = ops.sqrt(ops.sum(ops.square(x), axis=axis, keepdims=True))
    return x / ops.maximum(norm, epsilon)


def moco_logits(query, key, queue, temperature):
    """`[q . k, q . queue] / temperature`, shape (N, 1 + K).

    Args:
        query: (N, D) L2-normalised queries.
        key: (N, D) L2-normalised positive keys.
        queue: (K, D) L2-normalised negatives.
        temperature: float.
    """
    positive = ops.sum(query * key, axis=-1, keepdims=True)
    negative = ops.matmul(query, ops.transpose(queue))
    return ops.concatenate([positive, negative], axis=-1) / temperature


def info_nce(logits):
    """Cross-entropy with the positive at index 0, averaged over the batch."""
    log_probs = ops.log_softmax(logits, axis=-1)
    return -ops.mean(log_probs[:, 0])


def top1_positive(logits):
    """Fraction of queries whose positive has the largest logit."""
    hits = ops.equal(ops.argmax(logits, axis=-1), 0)
    return ops.mean(ops.cast(hits, "float32"))


def soft_cross_entropy(target, logits):
    """`-mean_n sum_j target_j log softmax(logits)_j` (AimCLR's D3M terms).

    The official code takes the log of softmax probabilities; `log_softmax`
    is the same function without the underflow.
    """
    log_probs = ops.log_softmax(logits, axis=-1)
    return -ops.mean(ops.sum(target * log_probs, axis=-1))


def multi_positive_nce(logits, positives):
    """AimCLR's NNM loss: mean log-likelihood of the positives per query.

    `-mean_n [sum_j P_j log_softmax(logits)_j / sum_j P_j]`.
    """
    log_probs = ops.log_softmax(logits, axis=-1)
    per_query = ops.sum(positives * log_probs, axis=-1) / ops.sum(
        positives, axis=-1
    )
    return -ops.mean(per_query)

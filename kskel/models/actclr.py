"""ActCLR: actionlet-dependent contrastive learning (FACTS §7).

Reference: Lin et al., "Actionlet-Dependent Contrastive Learning for
Unsupervised Skeleton-Based Action Recognition", CVPR 2023
(`LanglandsLin/ActCLR`, `net/actclr.py`, `net/st_gcn.py`).
"""

import keras
import numpy as np
from keras import ops

from kskel.errors import KskelError
from kskel.graph import get_layout
from kskel.models import actionlet
from kskel.models import losses
from kskel.models import skeleton_mix
from kskel.models.moco import MoCo
from kskel.models.moco import float32

ANCHORS = ("batch_mean", "dataset_mean")
QUERY_SIMILARITIES = ("squared", "cosine")


def top_keys(key, topk, threshold=0.95):
    """Similarity mining's key side: the `topk` largest key cosines per row.

    Key entries above `threshold` (near-duplicates of the key itself) are
    set to -1 first, as the official in-place `k[k > 0.95] = -1`; applying
    it twice changes nothing, so the in-place mutation is not needed.

    Args:
        key: (N, K) key cosines.
        topk: int <= K.
        threshold: float. Defaults to 0.95.

    Returns:
        `(key_top, indices)`, each (N, topk), in no particular order (the
        KL that takes them sums over entries): gather every query side
        paired with these keys at `indices`. Unsorted, the top-k of 128 x
        65536 cosines takes 170 ms instead of 255 ms.
    """
    key = ops.where(key > threshold, ops.cast(-1.0, key.dtype), key)
    return ops.top_k(key, k=topk, sorted=False)


def select_topk(query, key, topk, threshold=0.95):
    """`(query_top, key_top)`: `top_keys` and the query at its indices."""
    key_top, indices = top_keys(key, topk, threshold)
    return _take_along_rows(query, indices), key_top


def _take_along_rows(x, indices):
    """`take_along_axis(x, indices, axis=1)` for (N, K) x and (N, k) indices.

    On TensorFlow as a batched gather, whose forward-backward took 100 ms
    against 136 ms for Keras' general form at (128, 65536) and k = 8192.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(x, indices, batch_dims=1)
    return ops.take_along_axis(x, indices, axis=-1)


def similarity_kl(query, key, tau_q=0.1, tau_k=0.04):
    """`KL(softmax(key / tau_k) || softmax(query / tau_q))`, batch mean.

    As torch `kl_div(log_softmax(q / 0.1), softmax(k / 0.04),
    reduction="batchmean")`: sum over entries and samples divided by N.
    The key side carries no gradient.
    """
    log_q = ops.log_softmax(query / tau_q, axis=-1)
    log_k = ops.stop_gradient(ops.log_softmax(key / tau_k, axis=-1))
    total = ops.sum(ops.exp(log_k) * (log_k - log_q))
    return total / ops.cast(ops.shape(query)[0], total.dtype)


def average_motion(batches):
    """The paper's static anchor (Eq. 2): the mean training sequence.

    Args:
        batches: iterable of (N, M, T, V, C) arrays or tensors of the
            stream the model trains on (e.g. unaugmented training batches
            after the stream transform).

    Returns:
        float32 numpy array (M, T, V, C), for `ActCLR.set_average_motion`.
    """
    total, count = None, 0
    for batch in batches:
        batch = np.asarray(batch, np.float64)
        total = batch.sum(0) if total is None else total + batch.sum(0)
        count += batch.shape[0]
    if not count:
        raise KskelError("average_motion: the batches are empty.")
    return (total / count).astype(np.float32)


@keras.saving.register_keras_serializable(package="kskel")
class ActCLR(MoCo):
    """ActCLR on the four views `(im_q_extreme, im_q, im_p, im_k)`.

    Takes the views of `kskel.data.views.actclr_views` (strong, aug, weak,
    weak). Per step (after the base class's momentum update):

    1. Anchor feature from the key network; keys
       `k = normalize((1 - safp_mix) head(GAP h) + safp_mix head(SAFP(h,
       m_k)))` with the key view's actionlet m_k; `kn = k . Q`.
    2. Actionlets q_m, p_m of im_q and im_p from the query network
       (training mode, no gradient).
    3. View A (MATS): `x_A = im_q up(q_m) + im_q_extreme (1 - up(q_m))`.
    4. Skeleton AdaIN of im_p (in the joint stream it also replaces im_p
       for view C, as the official in-place update).
    5. View B: Skeleton Mix with the epoch's ranges, blended by p_m.
    6. View C: Skeleton Mix of im_p against the mixed key
       `kc = normalize(c k + p k[partner])`.
    7. Loss `KL(qn*, kn*) + KL(qtn*, kn*) + KL(pcn*, kcn*)` over the
       `topk` mined queue entries (query cosines squared with
       `query_similarity="squared"`), softmax temperatures `tau_q`
       (query) and `tau_k` (key). The keys k are enqueued.

    Paper vs official code. The defaults follow the official code except
    where it is broken; each difference has a flag (default first):

    | Item | Paper | Official | Flag |
    |---|---|---|---|
    | Static anchor | dataset mean | batch mean of im_k | `anchor` |
    | Cosine axis, Eq. 3 | features | v2023 feat., HEAD 1-axis | `mask_axis` |
    | Mixed key kc | - | HEAD per sample, v2023 broadcast | `kc_mode` |
    | AdaIN, joint | Eq. 6 | bone lengths (2 ways) | `ske_trans_mode` |
    | AdaIN, other streams | Eq. 6 | motion Eq. 6, bone lengths | `stream` |
    | Offline feature | SAFP | 0.5 GAP + 0.5 SAFP | `safp_mix` |
    | Eq. 4 gradient | sigma | none | `gradient_activation` |
    | Eq. 5 smoothing | adjacency G | body-part mean | `mask_smoothing` |
    | Eq. 5 activation | sigma, threshold | relu, x1e8, clip | `mask_*` |
    | Similarity mining | whole bank | top 8192, 0.95 filter | `topk` |
    | Query similarity, Eq. 9 | cosine | squared cosine | `query_similarity` |
    | Temperatures | 0.1 / 0.04 | 0.1 / 0.04 | `tau_q`, `tau_k` |

    - anchor: "batch_mean" (official, default) or "dataset_mean" (paper).
    - mask_axis: "feature" (paper and v2023, default: a working mask) or
      "head_collapse" (ActCLR-HEAD's bug: the mask is ~0).
    - kc_mode: "per_sample" (HEAD's fix, default) or "v2023_broadcast"
      (the 87.14 % checkpoint's code; only runs when N = feature_dim).
    - ske_trans_mode: "head" (norm over xyz, default) or "v2023" (norm
      over the bodies M, ratio raised to 100 / (epoch + 400)).
    - safp_mix: 0.5 (official) or 1.0 (paper: SAFP only).
    - mask_scale: 1e8 then clip to [0, 1] (official; the paper thresholds).
    - mask_threshold: 0 (default: the official scale) or t in (0, 1]:
      cells at >= t of each body's peak are 1, lower ones t-proportional
      (a threshold relative to the peak, as the map's magnitude depends on
      the network).
    - query_similarity: "squared" (official, default: `(q . m)^2`, so a
      queue entry opposite the query counts as similar) or "cosine"
      (paper Eq. 9: `q . m`, as on the key side).
    - gradient_activation: "none" (official, default) or "relu" (paper
      Eq. 4: a ReLU on the gradient before it is averaged into channel
      weights).
    - mask_smoothing: "body_part" (official, default: each joint takes its
      body part's mean) or "adjacency" (paper Eq. 5: the mean over the
      joint's graph neighbours and itself).

    Not flags (official behaviour kept): MATS masks come from the query
    network on im_q / im_p (the paper says the offline encoder), three KL
    terms and no InfoNCE.

    Args:
        anchor: "batch_mean" (official: the per-replica batch mean of
            im_k through the key network in training mode) or
            "dataset_mean" (paper: `average_motion`, set with
            `set_average_motion`, through the key network in inference
            mode). Defaults to "batch_mean".
        mask_axis: "feature" or "head_collapse"; see
            `actionlet.anchor_similarity`. Defaults to "feature".
        kc_mode: "per_sample" or "v2023_broadcast" (needs a per-replica
            batch equal to `feature_dim`). Defaults to "per_sample".
        ske_trans_mode: "head" or "v2023" (joint stream). Defaults to
            "head".
        stream: "joint", "motion" or "bone": the input stream, selects the
            Skeleton AdaIN. Defaults to "joint".
        topk: int, mined queue entries (clipped to `queue_size`).
            Defaults to 8192.
        tau_q: float, query-side softmax temperature. Defaults to 0.1.
        tau_k: float, key-side softmax temperature. Defaults to 0.04.
        mask_scale: float, amplification of the activation map before the
            clip. Defaults to 1e8.
        mask_threshold: float in [0, 1]; when > 0 it replaces `mask_scale`
            (see `actionlet.actionlet_mask`). Defaults to 0.
        safp_mix: float in [0, 1], weight of the SAFP key feature against
            the GAP one. Defaults to 0.5.
        query_similarity: "squared" or "cosine": the query side of the
            similarity-mining softmax. Defaults to "squared".
        gradient_activation: "none" or "relu"; see
            `actionlet.actionlet_mask`. Defaults to "none".
        mask_smoothing: "body_part" or "adjacency"; see
            `actionlet.smooth_joints`. Defaults to "body_part".
        queue_size: int. Defaults to 65536 (the official ActCLR K).
        key_init: as `MoCo`. Defaults to "copy": the official phase 2
            starts both encoders from the same (AimCLR) weights.
        **kwargs: other `MoCo` arguments; `seed` also seeds the Skeleton
            Mix / AdaIN draws; `temperature` is unused (as the official
            `T`).
    """

    METRICS = ("kl_a", "kl_b", "kl_c", "actionlet_mean")

    def __init__(
        self,
        anchor="batch_mean",
        mask_axis="feature",
        kc_mode="per_sample",
        ske_trans_mode="head",
        stream="joint",
        topk=8192,
        tau_q=0.1,
        tau_k=0.04,
        mask_scale=1e8,
        mask_threshold=0.0,
        safp_mix=0.5,
        query_similarity="squared",
        gradient_activation="none",
        mask_smoothing="body_part",
        queue_size=65536,
        key_init="copy",
        **kwargs,
    ):
        _check_choice("anchor", anchor, ANCHORS)
        _check_choice("mask_axis", mask_axis, actionlet.MASK_AXES)
        _check_choice("kc_mode", kc_mode, actionlet.KC_MODES)
        _check_choice(
            "ske_trans_mode", ske_trans_mode, skeleton_mix.TRANS_MODES
        )
        _check_choice("stream", stream, skeleton_mix.STREAM_MODES)
        _check_choice("query_similarity", query_similarity, QUERY_SIMILARITIES)
        _check_choice(
            "gradient_activation",
            gradient_activation,
            actionlet.GRADIENT_ACTIVATIONS,
        )
        _check_choice("mask_smoothing", mask_smoothing, actionlet.SMOOTHINGS)
        for name, value in (
            ("topk", topk),
            ("tau_q", tau_q),
            ("tau_k", tau_k),
            ("mask_scale", mask_scale),
        ):
            if value <= 0:
                raise KskelError(f"ActCLR: {name} must be > 0, got {value}.")
        if not 0.0 <= mask_threshold <= 1.0:
            raise KskelError(
                f"ActCLR: mask_threshold must be in [0, 1], got "
                f"{mask_threshold}."
            )
        if not 0.0 <= safp_mix <= 1.0:
            raise KskelError(
                f"ActCLR: safp_mix must be in [0, 1], got {safp_mix}."
            )
        super().__init__(queue_size=queue_size, key_init=key_init, **kwargs)
        frames = self.view_shape[1]
        if frames < skeleton_mix.CHUNK:
            raise KskelError(
                f"ActCLR needs views of at least {skeleton_mix.CHUNK} "
                f"frames; input_shape={self.view_shape}."
            )
        self.anchor = anchor
        self.mask_axis = mask_axis
        self.kc_mode = kc_mode
        self.ske_trans_mode = ske_trans_mode
        self.stream = stream
        self.topk = int(topk)
        self.tau_q = float(tau_q)
        self.tau_k = float(tau_k)
        self.mask_scale = float(mask_scale)
        self.mask_threshold = float(mask_threshold)
        self.safp_mix = float(safp_mix)
        self.query_similarity = query_similarity
        self.gradient_activation = gradient_activation
        self.mask_smoothing = mask_smoothing
        self.layout = get_layout(self.query.encoder.layout)
        self.mix_seed = keras.random.SeedGenerator(self.seed, name="mix_seed")
        if anchor == "dataset_mean":
            self.average_motion = self.add_weight(
                name="average_motion",
                shape=self.view_shape,
                initializer="zeros",
                trainable=False,
            )

    def set_average_motion(self, x_mean):
        """Sets the paper's static anchor (see `average_motion`).

        Args:
            x_mean: (M, T, V, C) array, the mean training sequence.
        """
        if self.anchor != "dataset_mean":
            raise KskelError(
                "set_average_motion needs ActCLR(anchor='dataset_mean'); "
                f"this model uses anchor={self.anchor!r}."
            )
        x_mean = np.asarray(x_mean, np.float32)
        if x_mean.shape != tuple(self.view_shape):
            raise KskelError(
                f"set_average_motion: expected shape {self.view_shape} "
                f"(M, T, V, C), got {x_mean.shape}."
            )
        if not np.isfinite(x_mean).all():
            raise KskelError("set_average_motion: x_mean is not finite.")
        self.average_motion.assign(x_mean)

    def anchor_feature(self, im_k, training=True):
        """(1, D) projected static anchor, without gradient.

        Args:
            im_k: (N, M, T, V, C) key views (their mean is the official
                anchor; unused with `anchor="dataset_mean"`).
            training: mode of the key network for the batch-mean anchor
                (the official code runs it in training mode).
        """
        if self.anchor == "dataset_mean":
            mean = ops.expand_dims(self.average_motion, 0)
            feature = self.key(mean, training=False)
        else:
            mean = ops.mean(im_k, axis=0, keepdims=True)
            feature = self.key(mean, training=training)
        return ops.stop_gradient(float32(feature))

    def _project_fn(self, network, num_bodies, training):
        """`project(h, weights=None)`: float32 `head(pool(h))`, (N, D)."""

        def project(h, weights=None):
            pooled = network.encoder.pool(h, num_bodies, weights=weights)
            return float32(network.head(pooled, training=training))

        return project

    def _feature_and_mask(self, network, x, anchor, training):
        """`(h, mask)`: float32 last feature map and actionlet of x."""
        # The actionlet maths (its gradient, SAFP weights) run in float32
        # under mixed precision too.
        h = float32(network.encoder.feature_map(x, training=training))
        mask = actionlet.actionlet_mask(
            h,
            self._project_fn(network, x.shape[1], training),
            anchor,
            self.layout,
            mask_axis=self.mask_axis,
            scale=self.mask_scale,
            threshold=self.mask_threshold,
            gradient_activation=self.gradient_activation,
            smoothing=self.mask_smoothing,
        )
        return h, mask

    def actionlet(self, x, training=False):
        """The key network's actionlet of x, (N, M, T', V) in [0, 1].

        The anchor is the model's: `average_motion` with
        `anchor="dataset_mean"`, else the mean of x.
        """
        x = ops.convert_to_tensor(x, "float32")
        anchor = self.anchor_feature(x, training=training)
        _, mask = self._feature_and_mask(self.key, x, anchor, training)
        return ops.reshape(mask, (-1, x.shape[1], *mask.shape[1:]))

    def encode_actionlet_keys(self, im_k, anchor):
        """`(keys, mask)`: L2-normalised GAP/SAFP keys and their actionlet."""
        h, mask = self._feature_and_mask(self.key, im_k, anchor, True)
        project = self._project_fn(self.key, im_k.shape[1], True)
        gap = project(h)
        safp = project(h, weights=mask)
        keys = (1.0 - self.safp_mix) * gap + self.safp_mix * safp
        return ops.stop_gradient(losses.l2_normalize(keys)), mask

    def _query_mask(self, x, anchor):
        """Actionlet of x from the query network (training mode)."""
        return self._feature_and_mask(self.query, x, anchor, True)[1]

    def _query_similarities(self, x, queue):
        """(N, K) similarities of the query of x to the queue entries."""
        cosines = ops.matmul(self(x, training=True), ops.transpose(queue))
        if self.query_similarity == "squared":
            return ops.square(cosines)
        return cosines

    def contrastive_loss(self, views):
        im_q_extreme, im_q, im_p, im_k = (
            ops.convert_to_tensor(v, "float32") for v in views
        )
        num_samples = ops.shape(im_q)[0]
        frames = im_q.shape[2]
        queue = ops.stop_gradient(ops.convert_to_tensor(self.queue))
        topk = min(self.topk, self.queue_size)

        anchor = self.anchor_feature(im_k)
        keys, key_mask = self.encode_actionlet_keys(im_k, anchor)
        kn = ops.matmul(keys, ops.transpose(queue))
        q_mask = self._query_mask(im_q, anchor)
        p_mask = self._query_mask(im_p, anchor)

        # View A: actionlet of the normal view, the rest from the strong one.
        x_a = actionlet.mats_mix(im_q, im_q_extreme, q_mask)
        # Views A and B are paired with the same top keys: one top-k, whose
        # order (unsorted) both gathers share.
        kn_top, kn_indices = top_keys(kn, topk)
        qn = _take_along_rows(self._query_similarities(x_a, queue), kn_indices)

        # View B: Skeleton AdaIN, then Skeleton Mix outside the actionlet.
        shift = skeleton_mix.draw_shift(self.mix_seed, num_samples)
        im_pt = skeleton_mix.ske_trans(
            im_p,
            shift,
            self.stream,
            self.layout,
            self.ske_trans_mode,
            self.epoch,
        )
        if self.stream == "joint":
            im_p = im_pt  # The official joint-mode update is in place.
        params = skeleton_mix.draw_mix_params(
            self.mix_seed, num_samples, frames, self.layout, self.epoch
        )
        im_ps, _, _ = skeleton_mix.ske_swap(im_pt, params)
        x_b = actionlet.mats_mix(im_pt, im_ps, p_mask)
        qtn = _take_along_rows(self._query_similarities(x_b, queue), kn_indices)

        # View C: Skeleton Mix everywhere, against the mixed key.
        params = skeleton_mix.draw_mix_params(
            self.mix_seed, num_samples, frames, self.layout
        )
        im_pc, mask_p, mask_c = skeleton_mix.ske_swap(im_p, params)
        partner = skeleton_mix.partner_index(num_samples, params.shift)
        p, c = actionlet.mixed_key_weights(
            p_mask, mask_p, mask_c, partner, im_p.shape[1]
        )
        kc = actionlet.mixed_keys(keys, p, c, partner, self.kc_mode)
        kcn = ops.matmul(kc, ops.transpose(queue))
        pcn, kcn_top = select_topk(
            self._query_similarities(im_pc, queue), kcn, topk
        )

        kl_a = similarity_kl(qn, kn_top, self.tau_q, self.tau_k)
        kl_b = similarity_kl(qtn, kn_top, self.tau_q, self.tau_k)
        kl_c = similarity_kl(pcn, kcn_top, self.tau_q, self.tau_k)
        metrics = {
            "kl_a": kl_a,
            "kl_b": kl_b,
            "kl_c": kl_c,
            "actionlet_mean": ops.mean(key_mask),
        }
        return kl_a + kl_b + kl_c, metrics, keys

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "anchor": self.anchor,
                "mask_axis": self.mask_axis,
                "kc_mode": self.kc_mode,
                "ske_trans_mode": self.ske_trans_mode,
                "stream": self.stream,
                "topk": self.topk,
                "tau_q": self.tau_q,
                "tau_k": self.tau_k,
                "mask_scale": self.mask_scale,
                "mask_threshold": self.mask_threshold,
                "safp_mix": self.safp_mix,
                "query_similarity": self.query_similarity,
                "gradient_activation": self.gradient_activation,
                "mask_smoothing": self.mask_smoothing,
            }
        )
        return config


def _check_choice(name, value, choices):
    if value not in choices:
        raise KskelError(
            f"ActCLR: {name} must be one of {choices}, got {value!r}."
        )

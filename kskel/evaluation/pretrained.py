"""The network an evaluation protocol starts from.

`--pretrained` names a pretraining `--model_dir` (its
`query_network.keras` is used) or a `.keras` file holding a
`SkeletonClassifier` (a query network or a converted/linear classifier).
`--random_init` gives the untrained baseline with the same architecture.
"""

from kskel import fileio
from kskel.errors import KskelError

QUERY_NETWORK = "query_network.keras"


def resolve(pretrained):
    """The `.keras` file `--pretrained` points at."""
    if fileio.isdir(pretrained):
        path = fileio.join(pretrained, QUERY_NETWORK)
        if not fileio.exists(path):
            raise KskelError(
                f"--pretrained={pretrained}: the directory has no "
                f"{QUERY_NETWORK} (did the pretraining run finish?)."
            )
        return path
    if not fileio.exists(pretrained):
        raise KskelError(f"--pretrained={pretrained}: not found.")
    return pretrained


def load_network(pretrained):
    """The `SkeletonClassifier` stored at `pretrained` (dir or file)."""
    from kskel.encoders import SkeletonClassifier
    from kskel.inference import load_model

    model = load_model(resolve(pretrained), flag="--pretrained")
    if not isinstance(model, SkeletonClassifier):
        raise KskelError(
            f"--pretrained={pretrained}: holds a {type(model).__name__}, "
            "expected a kskel SkeletonClassifier (a pretraining query "
            "network or a classifier)."
        )
    return model


def random_network(encoder_config, seed=0):
    """An untrained encoder (official init) with a throwaway linear head."""
    import keras

    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder

    keras.utils.set_random_seed(seed)
    encoder = STGCNEncoder(**encoder_config)
    return SkeletonClassifier(encoder, 1)


def starting_network(pretrained, random_init, encoder_config, seed=0):
    """`(network, source)`: what `--pretrained` / `--random_init` select.

    With `random_init`, the encoder is re-drawn with the architecture of
    `pretrained` when one is given, else with `encoder_config`. `source` is
    the path recorded in results (or "random_init").
    """
    if not pretrained and not random_init:
        raise KskelError(
            "--pretrained: required (a pretraining --model_dir or a .keras "
            "file), or pass --random_init for the untrained baseline."
        )
    if random_init:
        if pretrained:
            config = load_network(pretrained).encoder.get_config()
            config = {
                k: v for k, v in config.items() if k not in ("name", "dtype")
            }
        else:
            config = dict(encoder_config)
        return random_network(config, seed), "random_init"
    return load_network(pretrained), resolve(pretrained)


def estimate_batch_norm_statistics(
    network, data_dir, split, stream="joint", num_samples=512
):
    """Sets the batch-norm moving statistics of `network` from data.

    An untrained encoder's moving statistics are the initial 0/1, under
    which its eval-mode features shrink to ~1e-7 (N(0, 0.02) weights, no
    normalisation): no linear probe learns from them. A pretrained
    encoder's statistics come from its pretraining forward passes, so the
    fair random baseline gets the same. One training-mode forward pass
    over the first `num_samples` samples of `split` with momentum 0 sets
    every moving statistic to that batch's (a momentum average from 0/1
    would need hundreds of batches: the deep layers' true variances are
    ~1e-4). Weights are unchanged.
    """
    import keras

    from kskel.data import pipeline
    from kskel.data import schema
    from kskel.data.streams import stream_fn

    layout = schema.load_manifest(data_dir)["layout"]
    dataset = pipeline.make_dataset(
        data_dir,
        split,
        num_samples,
        training=False,
        with_labels=False,
        stream_fn=stream_fn(stream, layout),
    )
    layers = [
        layer
        for layer in network.encoder._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        for x in dataset.take(1):
            network.encoder(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return network

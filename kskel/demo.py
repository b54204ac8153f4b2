"""The main job: an end-to-end run on the embedded synthetic dataset.

Usage:
    python -m kskel.demo [--out_dir demo_out] [--reference_dir DIR]

1. Generates the synthetic NTU-25 dataset, pretrains SkeletonCLR on it with
   `configs/skeletonclr_demo.cfg` (CPU, minutes) and compares the KNN
   top-1 of the pretrained encoder with a randomly initialised one on the
   test split.
2. When the official checkpoints are at `--reference_dir` (default
   `../shared/reference` or `KSKEL_REFERENCE_DIR`), converts them to
   `.keras` and prints how far their logits are from the official ones.
"""

import os
import pathlib

import numpy as np
from absl import flags

from kskel import cli
from kskel.errors import KskelError

CHECKPOINTS = {
    "actclr": "actclr_joint_linear_epoch100_acc87.14_model.pt",
    "aimclr": "aimclr_joint_linear_epoch100_acc77.76_model.pt",
}

_REFERENCE_DIR = flags.DEFINE_string(
    "reference_dir",
    os.environ.get("KSKEL_REFERENCE_DIR", "../shared/reference"),
    "Directory holding checkpoints/ with the official weights.",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir", "demo_out", "Where the data, runs and converted models go."
)
_CONFIG = flags.DEFINE_string(
    "config", "configs/skeletonclr_demo.cfg", "Pretraining flag file."
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Override the flag file's epochs.", lower_bound=1
)


def run_reference_demo(reference_dir, out_dir):
    """Converts, predicts and returns `{method: relative max error}`."""
    from kskel.conversion import convert_checkpoint
    from kskel.fileio import save_keras_atomic
    from kskel.inference import run_prediction

    checkpoints = pathlib.Path(reference_dir) / "checkpoints"
    if not checkpoints.is_dir():
        raise KskelError(
            f"--reference_dir={reference_dir}: no checkpoints/ folder; point "
            "it (or KSKEL_REFERENCE_DIR) at shared/reference."
        )
    out_dir = pathlib.Path(out_dir)
    errors = {}
    for method, name in CHECKPOINTS.items():
        model, report = convert_checkpoint(checkpoints / name)
        print(report.summary())
        model_path = out_dir / f"{method}.keras"
        save_keras_atomic(model, model_path)
        reference = np.load(checkpoints / f"{method}_ref_io_eval.npz")
        inputs = out_dir / "reference_x.npy"
        np.save(inputs, reference["x"])
        logits = run_prediction(
            model_path, inputs, "NCTVM", out_dir / f"{method}_logits.npy"
        )
        scale = np.abs(reference["logits"]).max()
        errors[method] = float(np.abs(logits - reference["logits"]).max())
        same_top1 = np.array_equal(
            logits.argmax(1), reference["logits"].argmax(1)
        )
        print(
            f"{method}: max |logit - official| = {errors[method]:.3g} "
            f"({errors[method] / scale:.2e} of max |logit| {scale:.1f}); "
            f"top-1 identical: {same_top1}"
        )
    return errors


def knn_top1(model, data_dir, stream="joint"):
    """KNN (k=20, t=0.1) top-1 on `test` with `train` as the bank."""
    from kskel.data import schema
    from kskel.evaluation import features
    from kskel.evaluation import knn

    bank, bank_labels = features.extract(
        model, data_dir, "train", stream=stream
    )
    test, labels = features.extract(model, data_dir, "test", stream=stream)
    num_classes = schema.load_manifest(data_dir)["num_classes"]
    scores = knn.knn_predict(bank, bank_labels, test, num_classes, k=20)
    return knn.topk_accuracy(scores, labels)


def run_synthetic_demo(config_path, out_dir, epochs=None):
    """Pretrains on the synthetic data; returns KNN top-1 (random, trained)."""
    import keras

    from kskel.data import schema
    from kskel.flag_config import config_from_flagfile
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import build_model
    from kskel.pretraining import run_pretraining

    out_dir = pathlib.Path(out_dir)
    overrides = {
        "data_dir": str(out_dir / "synthetic"),
        "model_dir": str(out_dir / "pretrain"),
    }
    if epochs:
        overrides["epochs"] = epochs
    config = config_from_flagfile(PretrainConfig, config_path, **overrides)
    result = run_pretraining(config)
    trained = keras.models.load_model(
        out_dir / "pretrain" / "query_network.keras"
    )
    keras.utils.set_random_seed(config.seed)
    view_shape = schema.sample_shape(schema.load_manifest(config.data_dir))
    random = build_model(config, view_shape).query
    accuracy = {
        "random_init": knn_top1(random, config.data_dir, config.stream),
        "pretrained": knn_top1(trained, config.data_dir, config.stream),
    }
    print(
        f"{config.method} on the synthetic dataset, {result['epochs']} "
        f"epochs: KNN top-1 {accuracy['pretrained']:.1%} pretrained vs "
        f"{accuracy['random_init']:.1%} random init"
    )
    return accuracy


def main(argv):
    del argv
    run_synthetic_demo(_CONFIG.value, _OUT_DIR.value, _EPOCHS.value)
    if (pathlib.Path(_REFERENCE_DIR.value) / "checkpoints").is_dir():
        run_reference_demo(_REFERENCE_DIR.value, _OUT_DIR.value)
    else:
        print(
            f"no official checkpoints at {_REFERENCE_DIR.value}; skipping "
            "the conversion parity check"
        )
    return 0


if __name__ == "__main__":
    cli.run(main)

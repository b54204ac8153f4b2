"""The main job: an end-to-end run on the embedded synthetic dataset.

Usage:
    python -m kskel.demo [--out_dir demo_out] [--reference_dir DIR]
        [--phases=CFG,CFG] [--epochs N]

1. Generates the synthetic NTU-25 dataset and pretrains in two phases as
   the official ActCLR does (FACTS §7.1): a MoCo phase
   (`configs/skeletonclr_demo.cfg`; the official phase 1 is AimCLR, 300
   epochs), then ActCLR (`configs/actclr_demo.cfg`) with both encoders
   initialised from phase 1's query network and the queue filled with its
   keys (`--queue_init=keys`). CPU, minutes. Prints the KNN top-1 after
   each phase, then compares the KNN and linear-evaluation top-1 of the
   final encoder with a randomly initialised one (batch-norm statistics
   from the data) on the test split; exports the final linear classifier
   as a SavedModel (`OUT_DIR/saved_model`) and scores the test split
   through its serving signature.
2. When the official checkpoints are at `--reference_dir` (default
   `../shared/reference` or `KSKEL_REFERENCE_DIR`), converts them to
   `.keras` and prints how far their logits are from the official ones.
"""

import dataclasses
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
_PHASES = flags.DEFINE_list(
    "phases",
    ["configs/skeletonclr_demo.cfg", "configs/actclr_demo.cfg"],
    "Pretraining flag files, run in order; each phase after the first "
    "starts from the previous one's query network (--init_from).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", None, "Override every phase's epochs.", lower_bound=1
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


def evaluate(pretrained, data_dir, out_dir, stream, encoder):
    """KNN and linear top-1 of `pretrained` (or random init when None)."""

    from kskel.evaluation.knn_eval import KnnConfig
    from kskel.evaluation.knn_eval import run_knn
    from kskel.evaluation.linear import LinearEvalConfig
    from kskel.evaluation.linear import run_linear_eval
    from kskel.flag_config import config_from_flagfile

    common = {
        "pretrained": pretrained or "",
        "random_init": pretrained is None,
        "data_dir": data_dir,
        "stream": stream,
        **encoder,
    }
    knn = config_from_flagfile(
        KnnConfig,
        "configs/knn_demo.cfg",
        model_dir=str(out_dir / "knn"),
        features="encoder",
        **common,
    )
    linear = config_from_flagfile(
        LinearEvalConfig,
        "configs/linear_eval_demo.cfg",
        model_dir=str(out_dir / "linear_eval"),
        **common,
    )
    return {
        "knn": run_knn(knn)["top1"],
        "linear": run_linear_eval(linear)["top1"],
    }


def pretrain_phases(config_paths, out_dir, epochs=None):
    """Runs the pretraining phases; returns the configs and KNN top-1s.

    Phase i writes `out_dir/pretrain_<i>_<method>`; each phase after the
    first gets `--init_from` the previous run's query network.
    """
    from kskel.evaluation.knn_eval import KnnConfig
    from kskel.evaluation.knn_eval import run_knn
    from kskel.flag_config import config_from_flagfile
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import run_pretraining

    if not config_paths:
        raise KskelError("--phases: give at least one pretraining flag file.")
    out_dir = pathlib.Path(out_dir)
    configs, knn, init_from = [], [], ""
    for index, path in enumerate(config_paths, 1):
        overrides = {"data_dir": str(out_dir / "synthetic")}
        if init_from:
            overrides["init_from"] = init_from
        if epochs:
            overrides["epochs"] = epochs
        config = config_from_flagfile(PretrainConfig, path, **overrides)
        config = dataclasses.replace(
            config, model_dir=str(out_dir / f"pretrain_{index}_{config.method}")
        )
        result = run_pretraining(config)
        init_from = str(pathlib.Path(config.model_dir) / "query_network.keras")
        top1 = run_knn(
            config_from_flagfile(
                KnnConfig,
                "configs/knn_demo.cfg",
                pretrained=config.model_dir,
                data_dir=config.data_dir,
                stream=config.stream,
                model_dir=str(pathlib.Path(config.model_dir) / "knn"),
                features="encoder",
            )
        )["top1"]
        print(
            f"phase {index}: {config.method}, {result['epochs']} "
            f"epoch{'' if result['epochs'] == 1 else 's'}, "
            f"KNN top-1 {top1:.1%} ({config.model_dir})"
        )
        configs.append(config)
        knn.append(top1)
    return configs, knn


def run_synthetic_demo(config_paths, out_dir, epochs=None):
    """Pretrains on the synthetic data; returns top-1 per protocol."""
    out_dir = pathlib.Path(out_dir)
    configs, phase_knn = pretrain_phases(config_paths, out_dir, epochs)
    config = configs[-1]
    encoder = {"base_width": config.base_width, "hidden_dim": config.hidden_dim}
    accuracy = {
        "phases_knn": phase_knn,
        "pretrained": evaluate(
            config.model_dir,
            config.data_dir,
            out_dir / "eval_pretrained",
            config.stream,
            encoder,
        ),
        "random_init": evaluate(
            None,
            config.data_dir,
            out_dir / "eval_random_init",
            config.stream,
            encoder,
        ),
    }
    methods = " -> ".join(c.method for c in configs)
    print(f"{methods} on the synthetic dataset (chance 6.2%):")
    for protocol in ("knn", "linear"):
        print(
            f"  {protocol:>6} top-1: "
            f"{accuracy['pretrained'][protocol]:.1%} pretrained, "
            f"{accuracy['random_init'][protocol]:.1%} random init"
        )
    saved_model = out_dir / "saved_model"
    served = export_and_score(
        out_dir / "eval_pretrained" / "linear_eval" / "classifier.keras",
        saved_model,
        config.data_dir,
        config.stream,
    )
    print(
        f"  SavedModel of the linear classifier: top-1 {served:.1%} on the "
        "test split through its serving_default signature"
    )
    print(
        f"  written: {out_dir}/pretrain_*/ (checkpoints, logs, "
        f"query_network.keras), {out_dir}/eval_*/ (results.json, "
        f"linear_eval/classifier.keras), {saved_model} (SavedModel)"
    )
    accuracy["saved_model"] = served
    return accuracy


def export_and_score(classifier, out, data_dir, stream):
    """Exports `classifier` as a SavedModel; its test top-1 through it."""
    from kskel import exporting
    from kskel.inference import evaluate_split

    exporting.export_saved_model(
        str(classifier), str(out), class_names_from=data_dir, stream=stream
    )
    accuracy, _ = evaluate_split(str(out), data_dir, "test", stream)
    return accuracy


def main(argv):
    del argv
    run_synthetic_demo(_PHASES.value, _OUT_DIR.value, _EPOCHS.value)
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

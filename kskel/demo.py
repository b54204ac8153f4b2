"""The main job: official weights in, parity-checked predictions out.

Usage:
    python -m kskel.demo [--reference_dir DIR] [--out_dir demo_out]

Converts the official ActCLR and AimCLR linear-evaluation checkpoints to
`.keras` files with `kskel.convert`, runs `kskel.predict` on the reference
input and prints how far the logits are from the official PyTorch ones.
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
    "out_dir", "demo_out", "Where the converted models and logits go."
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


def main(argv):
    del argv
    run_reference_demo(_REFERENCE_DIR.value, _OUT_DIR.value)
    return 0


if __name__ == "__main__":
    cli.run(main)

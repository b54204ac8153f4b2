"""Converts an official SkeletonCLR / AimCLR / ActCLR checkpoint to Keras.

Usage:
    python -m kskel.convert --checkpoint official.pt --out model.keras

Reads the PyTorch zip checkpoint without torch and without executing pickled
code, prints which tensors were loaded and ignored, and writes the `.keras`
file atomically; nothing is written when any tensor does not match.
"""

from absl import flags

from kskel import cli
from kskel.errors import KskelError

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Official PyTorch checkpoint (.pt, zip format)."
)
_OUT = flags.DEFINE_string("out", None, "Output Keras file (.keras).")
_LAYOUT = flags.DEFINE_string(
    "layout", "ntu25", "Skeleton layout of the checkpoint."
)


def main(argv):
    del argv
    if not _CHECKPOINT.value or not _OUT.value:
        raise KskelError("--checkpoint and --out are required.")
    from kskel import conversion
    from kskel import fileio

    model, report = conversion.convert_checkpoint(
        _CHECKPOINT.value, _LAYOUT.value
    )
    fileio.save_keras_atomic(model, _OUT.value)
    print(report.summary())
    print(f"wrote {_OUT.value}")
    return 0


if __name__ == "__main__":
    cli.run(main)

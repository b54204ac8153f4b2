"""Runs a trained skeleton model on an array of sequences.

Usage:
    python -m kskel.predict --model model.keras --input x.npy \\
        --layout NCTVM --output logits.npy [--features] [--batch_size 64]
    python -m kskel.predict --model saved_models/NAME --input x.npy
    python -m kskel.predict --model model.keras --data DIR --split test

`--model` is a `.keras` file or a SavedModel directory written by
`python -m kskel.export` (which takes only the `(M, T, V, C)` it was
exported for). `--layout NCTVM` is the official (N, C, T, V, M) layout;
`NMTVC` is the project's own. The output holds logits (or, with
`--features`, the pooled encoder features); the top-1 class of each sample
is printed. Every path may be remote (`gs://`, or `s3://` / `hdfs://` with
requirements-io.txt).
"""

import numpy as np
from absl import flags

from kskel import cli
from kskel import fileio
from kskel.errors import KskelError
from kskel.inference import LAYOUTS

_MODEL = flags.DEFINE_string(
    "model", None, "A `.keras` model file or an exported SavedModel directory."
)
_INPUT = flags.DEFINE_string("input", None, "Input `.npy` array.")
_DATA = flags.DEFINE_string(
    "data", None, "A TFRecord dataset directory (instead of --input)."
)
_SPLIT = flags.DEFINE_string("split", "test", "Split of --data to score.")
_STREAM = flags.DEFINE_enum(
    "stream", "joint", ["joint", "motion", "bone"], "Stream fed to --model."
)
_LAYOUT = flags.DEFINE_enum(
    "layout", "NMTVC", list(LAYOUTS), "Axis order of --input."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Where to write the logits (or features) as `.npy`."
)
_FEATURES = flags.DEFINE_bool(
    "features", False, "Write pooled encoder features instead of logits."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 64, "Samples per forward pass.", lower_bound=1
)


def main(argv):
    del argv
    if not _MODEL.value or bool(_INPUT.value) == bool(_DATA.value):
        raise KskelError("--model and one of --input or --data are required.")
    for flag in (_MODEL, _INPUT, _DATA, _OUTPUT):
        fileio.check_scheme(flag.value, flag.name)
    if _DATA.value:
        from kskel.inference import evaluate_split

        accuracy, count = evaluate_split(
            _MODEL.value,
            _DATA.value,
            _SPLIT.value,
            _STREAM.value,
            _BATCH_SIZE.value,
        )
        print(f"{_SPLIT.value}: top-1 {accuracy:.4f} on {count} samples")
        return 0
    from kskel.inference import run_prediction

    out = run_prediction(
        _MODEL.value,
        _INPUT.value,
        _LAYOUT.value,
        _OUTPUT.value,
        _FEATURES.value,
        _BATCH_SIZE.value,
    )
    if not _FEATURES.value:
        for i, row in enumerate(out):
            print(f"sample {i}: class {int(np.argmax(row))}")
    if _OUTPUT.value:
        print(f"wrote {_OUTPUT.value} {out.shape}")
    return 0


if __name__ == "__main__":
    cli.run(main)

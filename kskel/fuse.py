"""Late fusion of the test logits of several runs (3-stream ensembles).

Usage:
    python -m kskel.fuse --runs=OUT_JOINT,OUT_BONE,OUT_MOTION \\
        [--weights=0.6,0.6,0.4] --model_dir=OUT_3S

Each run is a `--model_dir` of `kskel.finetune` or linear evaluation (any
directory with `test_logits.npy` and `test_labels.npy` of the same test
split). The weighted sum of the raw logits is scored and written to
`--model_dir` (`results.json`, `results.md`, `test_logits.npy`,
`test_labels.npy`). Other published weights are listed in
`kskel.evaluation.fusion`.
"""

from absl import flags

from kskel import cli
from kskel import fileio
from kskel.errors import KskelError

_RUNS = flags.DEFINE_list(
    "runs", [], "Run directories, joint, bone, motion for the default."
)
_WEIGHTS = flags.DEFINE_list(
    "weights",
    [],
    "One weight per run; empty: 0.6,0.6,0.4 for joint, bone, motion.",
)
_MODEL_DIR = flags.DEFINE_string("model_dir", "", "Output directory.")


def _weights(values):
    try:
        return [float(v) for v in values] or None
    except ValueError:
        raise KskelError(
            f"--weights={','.join(values)}: expected comma-separated numbers."
        ) from None


def main(argv):
    del argv
    from kskel.evaluation.fusion import fuse_runs

    if not _RUNS.value:
        raise KskelError("--runs: required (comma-separated run dirs).")
    if not _MODEL_DIR.value:
        raise KskelError("--model_dir: required (output directory).")
    for run in _RUNS.value:
        fileio.check_scheme(run, "runs")
    fileio.check_scheme(_MODEL_DIR.value, "model_dir")
    weights = _weights(_WEIGHTS.value)
    results = fuse_runs(
        _RUNS.value,
        weights,
        _MODEL_DIR.value,
        flags={
            "runs": _RUNS.value,
            "weights": _WEIGHTS.value,
            "model_dir": _MODEL_DIR.value,
        },
    )
    for run in results["runs"]:
        print(
            f"{run['dir']} ({run['stream']}, weight {run['weight']:g}): "
            f"top-1 {run['top1']:.4f}"
        )
    print(
        f"fused: top-1 {results['top1']:.4f}, top-5 {results['top5']:.4f} "
        f"on {results['num_samples']} samples; wrote {_MODEL_DIR.value}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)

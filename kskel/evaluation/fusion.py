"""Multi-stream late fusion of test logits (FACTS §8, "3-stream fusion").

The papers' 3s numbers add the raw test logits (not softmax outputs) of
the joint, bone and motion models sample by sample, weighted:

    fused = w_joint * logits_joint + w_bone * logits_bone
            + w_motion * logits_motion

Published weights, in the order (joint, bone, motion):

- (0.6, 0.6, 0.4): AimCLR paper, Levigty `ensemble_*.py`, ActCLR root
  `ensemble_ntu_cv.py`; the default here.
- (0.4, 0.4, 0.4): ActCLR root `ensemble_ntu_cs.py`.
- (0.6, 0.6, 0.8): ActCLR-repo `AimCLR/ensemble_ntu_cv.py`.
- (0.6, 0.4, 0.6): ActCLR repo, NTU-120.
- (0.2, 0.2, 0.6): ActCLR repo, PKU-MMD II x-view.

Which weights produced ActCLR's paper numbers is unverified (FACTS §12).
The official scripts fuse each stream's best-epoch `test_result.pkl`; a
kskel run provides its final epoch's `test_logits.npy`.

Any run directory holding `test_logits.npy` and `test_labels.npy` can be
fused (fine-tuning, linear evaluation, an earlier fusion), as long as all
were scored on the same test split in the same order. Run and output
directories may be remote (`kskel.fileio`).
"""

import numpy as np

from kskel.errors import KskelError

DEFAULT_WEIGHTS = (0.6, 0.6, 0.4)
DEFAULT_STREAMS = ("joint", "bone", "motion")
LOGITS_NAME = "test_logits.npy"
LABELS_NAME = "test_labels.npy"


def load_run(run_dir):
    """`(logits (N, K) float32, labels (N,) int32, results dict)` of a run.

    `results` is the run's `results.json`, or `{}` when it has none.

    Raises:
        KskelError: naming the run, when it or its arrays are missing,
            unreadable or inconsistent.
    """
    import json

    from kskel import fileio

    if not fileio.isdir(run_dir):
        raise KskelError(f"--runs: {run_dir}: no such run directory.")
    arrays = []
    for name in (LOGITS_NAME, LABELS_NAME):
        path = fileio.join(run_dir, name)
        if not fileio.exists(path):
            raise KskelError(
                f"--runs: {run_dir}: no {name} (did its evaluation finish?)."
            )
        try:
            arrays.append(fileio.load_array(path))
        except (ValueError, OSError, EOFError) as err:
            raise KskelError(f"--runs: {path}: unreadable ({err}).") from None
    logits, labels = arrays
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise KskelError(
            f"--runs: {run_dir}: {LOGITS_NAME} {logits.shape} and "
            f"{LABELS_NAME} {labels.shape} are not (N, classes) and (N,)."
        )
    results = {}
    path = fileio.join(run_dir, "results.json")
    if fileio.exists(path):
        try:
            with fileio.open_file(path) as file:
                results = json.load(file)
        except ValueError as err:
            raise KskelError(f"--runs: {path}: not JSON ({err}).") from None
    return logits.astype(np.float32), labels.astype(np.int32), results


def fuse_logits(logits, weights):
    """`sum_i weights[i] * logits[i]`, float32 `(N, K)`."""
    if len(logits) != len(weights):
        raise KskelError(
            f"--weights: {len(weights)} weights for {len(logits)} runs; "
            "give one weight per run."
        )
    fused = sum(
        np.float64(w) * np.asarray(x, np.float64)
        for w, x in zip(weights, logits)
    )
    return fused.astype(np.float32)


def _default_weights(run_dirs, streams):
    if len(run_dirs) != len(DEFAULT_WEIGHTS):
        raise KskelError(
            f"--weights: the default {DEFAULT_WEIGHTS} is for three runs "
            f"(joint, bone, motion), got {len(run_dirs)} runs; pass one "
            "weight per run."
        )
    known = [s for s in streams if s]
    if len(known) == len(streams) and tuple(streams) != DEFAULT_STREAMS:
        raise KskelError(
            f"--runs: the streams are {', '.join(streams)}; the default "
            f"weights {DEFAULT_WEIGHTS} are for joint, bone, motion in this "
            "order. Reorder --runs or pass --weights."
        )
    return DEFAULT_WEIGHTS


def _common(values, mixed):
    values = {v for v in values if v}
    if len(values) == 1:
        return values.pop()
    return mixed if values else "unknown"


def fuse_runs(run_dirs, weights=None, model_dir=None, flags=None):
    """Fuses the test logits of `run_dirs`; optionally writes the result.

    Args:
        run_dirs: list of run directories (each with `test_logits.npy` and
            `test_labels.npy`).
        weights: one float per run, or None for `DEFAULT_WEIGHTS` (three
            runs, which must be joint, bone, motion when their
            `results.json` names their streams).
        model_dir: output directory for `results.json`, `results.md` and
            the fused `test_logits.npy` / `test_labels.npy`; None writes
            nothing.
        flags: dict of the command-line flags, recorded in the results.

    Returns:
        dict, the results (protocol "fusion", fused top1 / top5, per-run
        top1, weights).

    Raises:
        KskelError: no runs, a missing run or file, weights that do not
            match the runs, or runs scored on different test labels.
    """
    from kskel import fileio
    from kskel.evaluation.knn import topk_accuracy
    from kskel.evaluation.results import write_results

    if not run_dirs:
        raise KskelError("--runs: give at least one run directory.")
    if weights is not None and len(weights) != len(run_dirs):
        raise KskelError(
            f"--weights: {len(weights)} weights for {len(run_dirs)} runs; "
            "give one weight per run."
        )
    loaded = [load_run(run) for run in run_dirs]
    first_labels, first_shape = loaded[0][1], loaded[0][0].shape
    for run, (logits, labels, _) in zip(run_dirs[1:], loaded[1:]):
        if logits.shape != first_shape:
            raise KskelError(
                f"--runs: {run}: logits of shape {logits.shape}, "
                f"{run_dirs[0]} has {first_shape}; fuse runs of one test "
                "split and class set."
            )
        if not np.array_equal(labels, first_labels):
            raise KskelError(
                f"--runs: {run}: {LABELS_NAME} differs from that of "
                f"{run_dirs[0]}; the runs were not scored on the same test "
                "split in the same order."
            )
    streams = [results.get("stream", "") for _, _, results in loaded]
    if weights is None:
        weights = _default_weights(run_dirs, streams)
    weights = [float(w) for w in weights]
    fused = fuse_logits([logits for logits, _, _ in loaded], weights)
    runs = [
        {
            "dir": run,
            "stream": results.get("stream", "unknown"),
            "method": results.get("method", "unknown"),
            "protocol": results.get("protocol", "unknown"),
            "weight": weight,
            "top1": topk_accuracy(logits, labels, 1),
        }
        for run, (logits, labels, results), weight in zip(
            run_dirs, loaded, weights
        )
    ]
    results = {
        "protocol": "fusion",
        "top1": topk_accuracy(fused, first_labels, 1),
        "top5": topk_accuracy(fused, first_labels, 5),
        "num_samples": int(len(first_labels)),
        "checkpoint": ",".join(run_dirs),
        "flags": dict(flags or {}),
        "weights": weights,
        "runs": runs,
        "method": _common([r["method"] for r in runs], "mixed"),
        "stream": "+".join(s or "unknown" for s in streams),
        "dataset": _common(
            [res.get("dataset", "") for _, _, res in loaded], "mixed"
        ),
        "split": _common(
            [res.get("split", "") for _, _, res in loaded], "mixed"
        ),
    }
    if model_dir:
        fileio.makedirs(model_dir)
        fileio.save_array_atomic(fileio.join(model_dir, LOGITS_NAME), fused)
        fileio.save_array_atomic(
            fileio.join(model_dir, LABELS_NAME), first_labels
        )
        write_results(model_dir, results)
    return results

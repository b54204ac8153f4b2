"""`results.json` and Markdown table rows of an evaluation run."""

import json

from kskel import fileio

RESULTS_NAME = "results.json"
TABLE_NAME = "results.md"


def markdown_row(results):
    """One row in the papers' layout: method | protocol | stream | top-1."""
    return (
        f"| {results.get('method', '?')} | {results['protocol']} | "
        f"{results.get('stream', 'joint')} | {100 * results['top1']:.1f} | "
        f"{100 * results['top5']:.1f} | {results['num_samples']} |"
    )


TABLE_HEADER = (
    "| Method | Protocol | Stream | Top-1 (%) | Top-5 (%) | Samples |\n"
    "|---|---|---|---|---|---|"
)


def write_results(model_dir, results):
    """Writes `results.json` and `results.md` atomically; returns the path.

    Args:
        model_dir: output directory (created).
        results: dict with at least `protocol`, `top1`, `top5`,
            `num_samples`, `checkpoint` and `flags`.
    """
    missing = [
        key
        for key in ("protocol", "top1", "top5", "num_samples", "checkpoint")
        if key not in results
    ]
    if missing:
        raise ValueError(f"results lack {missing}")
    fileio.makedirs(model_dir)
    path = fileio.join(model_dir, RESULTS_NAME)
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "w") as file:
            json.dump(results, file, indent=2, sort_keys=True, default=str)
    table = fileio.join(model_dir, TABLE_NAME)
    with fileio.atomic_path(table) as tmp:
        with open(tmp, "w") as file:
            file.write(f"{TABLE_HEADER}\n{markdown_row(results)}\n")
    return path

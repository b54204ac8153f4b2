"""The benchmark CLIs run and report their figures; the PyTorch
transcription they compare against is the official encoder, by its
verified parameter count."""

import json
import subprocess
import sys

import pytest

from benchmarks.official_torch import build_encoder


def test_official_encoder_has_the_official_parameter_count():
    torch = pytest.importorskip("torch")
    encoder = build_encoder(torch)
    # FACTS.md 2.4: backbone 821,380 with the 256-256-128 projection head
    # 920,068 (query encoder of the pretraining checkpoints).
    assert sum(p.numel() for p in encoder.parameters()) == 920_068
    outputs = encoder.train()(torch.zeros(4, 3, 50, 25, 2))
    assert tuple(outputs.shape) == (4, 128)


def _last_json_line(module, *args):
    """Runs `python -m module args` and parses its last output line."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_official_torch_benchmark_prints_its_figures():
    pytest.importorskip("torch")
    figures = _last_json_line(
        "benchmarks.official_torch",
        "--batch_size=4",
        "--repeats=1",
        "--threads=1",
    )
    assert figures["encoder_forward_backward"]["samples_per_s"] > 0
    assert 0 < figures["actclr_step_upper_bound_samples_per_s"]


def test_run_quick_under_bfloat16_reports_every_figure():
    figures = _last_json_line(
        "benchmarks.run",
        "--quick",
        "--methods=skeletonclr",
        "--precision=mixed_bfloat16",
    )
    assert figures["precision"] == "mixed_bfloat16"
    assert figures["peak_gflops"] > 0
    for name in ("encoder_forward", "encoder_forward_backward"):
        assert figures[name]["samples_per_s"] > 0
    step = figures["skeletonclr_train_step"]
    assert step["traces"] == 1 and step["queue_size"] == 32768

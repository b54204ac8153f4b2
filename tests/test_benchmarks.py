"""The PyTorch transcription of the official encoder that the benchmarks
compare against is the official network, by its verified parameter count."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from benchmarks.official_torch import build_encoder  # noqa: E402


def test_official_encoder_has_the_official_parameter_count():
    encoder = build_encoder(torch)
    # FACTS.md 2.4: backbone 821,380 with the 256-256-128 projection head
    # 920,068 (query encoder of the pretraining checkpoints).
    assert sum(p.numel() for p in encoder.parameters()) == 920_068
    outputs = encoder.train()(torch.zeros(4, 3, 50, 25, 2))
    assert tuple(outputs.shape) == (4, 128)


def test_official_torch_benchmark_prints_its_figures():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.official_torch",
            "--batch_size=4",
            "--repeats=1",
            "--threads=1",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["encoder_forward_backward"]["samples_per_s"] > 0
    assert 0 < figures["actclr_step_upper_bound_samples_per_s"]

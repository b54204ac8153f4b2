"""The README's main job, `python -m kskel.demo`, end to end on tiny data."""

import json
import os
import re
import subprocess
import sys

import pytest

TINY = """--flagfile=configs/skeletonclr_demo.cfg
--synthetic_samples=300
--base_width=4
--hidden_dim=16
--batch_size=32
--queue_size=64
--epochs=2
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    config = root / "tiny.cfg"
    config.write_text(TINY)
    out = root / "out"
    env = dict(os.environ, KSKEL_REFERENCE_DIR=str(root / "absent"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.demo",
            f"--config={config}",
            f"--out_dir={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def _results(out, name):
    path = out / name / "linear_eval" / "results.json"
    return json.loads(path.read_text())


def test_demo_reports_both_protocols_for_both_encoders(demo):
    out, stdout = demo
    for protocol in ("knn", "linear"):
        line = re.search(
            rf"{protocol} top-1: ([\d.]+)% pretrained, ([\d.]+)% random init",
            stdout,
        )
        assert line, stdout
    pretrained = _results(out, "eval_pretrained")
    random_init = _results(out, "eval_random_init")
    assert pretrained["num_samples"] == random_init["num_samples"] > 0
    assert f"{100 * pretrained['top1']:.1f}% pretrained" in stdout
    assert (out / "pretrain" / "query_network.keras").is_file()


def test_demo_exports_a_saved_model_that_scores_like_the_classifier(demo):
    out, stdout = demo
    assert (out / "saved_model" / "saved_model.pb").is_file()
    served = float(
        re.search(
            r"SavedModel of the linear classifier: top-1 ([\d.]+)%", stdout
        ).group(1)
    )
    pretrained = _results(out, "eval_pretrained")
    # The same classifier, served: the same predictions up to float noise.
    assert served == pytest.approx(
        100 * pretrained["top1"], abs=100 / pretrained["num_samples"] + 0.05
    )

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
# The second phase: ActCLR with the demo's settings on the tiny encoder.
TINY_ACTCLR = """--flagfile=configs/actclr_demo.cfg
--synthetic_samples=300
--base_width=4
--hidden_dim=16
--batch_size=32
--queue_size=64
--actclr_topk=32
--epochs=1
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    configs = [root / "tiny.cfg", root / "tiny_actclr.cfg"]
    configs[0].write_text(TINY)
    configs[1].write_text(TINY_ACTCLR)
    out = root / "out"
    env = dict(os.environ, KSKEL_REFERENCE_DIR=str(root / "absent"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.demo",
            f"--phases={configs[0]},{configs[1]}",
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
    # Phase 2 started from phase 1's query network, with a warm queue.
    phase2 = json.loads((out / "pretrain_2_actclr" / "config.json").read_text())
    assert phase2["init_from"] == str(
        out / "pretrain_1_skeletonclr" / "query_network.keras"
    )
    assert phase2["queue_init"] == "keys"
    assert re.search(r"phase 1: skeletonclr, 2 epochs, KNN top-1", stdout)
    assert re.search(r"phase 2: actclr, 1 epoch, KNN top-1", stdout)
    assert (out / "pretrain_2_actclr" / "query_network.keras").is_file()


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

"""Pictures (valid PNGs, TensorBoard images) and the visualize CLI."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.evaluation import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the header."""
    with open(path, "rb") as file:
        head = file.read(24)
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(
        head[20:24], "big"
    )


def _assert_png(path):
    width, height = _png_size(path)
    assert width > 100 and height > 100
    assert os.path.getsize(path) > 1000
    # Atomic writes leave no temporary file behind.
    leftovers = [
        n for n in os.listdir(os.path.dirname(path)) if n.startswith(".tmp")
    ]
    assert leftovers == []


def _skeleton(rng, bodies=1):
    skeleton = np.zeros((2, 6, 25, 3), np.float32)
    skeleton[:bodies] = rng.normal(size=(bodies, 6, 25, 3))
    return skeleton


def test_plot_actionlet_with_and_without_ground_truth(rng, tmp_path):
    skeleton = _skeleton(rng, bodies=2)
    weights = rng.uniform(size=(2, 25))
    one = plots.plot_actionlet(
        skeleton, weights, tmp_path / "one.png", frame=2, title="x"
    )
    two = plots.plot_actionlet(
        skeleton, weights, tmp_path / "two.png", ground_truth=1 - weights
    )
    assert one == str(tmp_path / "one.png")
    _assert_png(one)
    _assert_png(two)
    # The ground-truth panel makes the figure wider, not taller.
    assert _png_size(two)[0] > _png_size(one)[0]
    assert _png_size(two)[1] == _png_size(one)[1]


def test_plot_actionlet_rejects_bad_shapes(rng, tmp_path):
    skeleton = _skeleton(rng)
    with pytest.raises(KskelError, match=r"expected \(M, V\)"):
        plots.plot_actionlet(skeleton, np.ones((2, 24)), tmp_path / "a.png")
    with pytest.raises(KskelError, match="frame 6"):
        plots.plot_actionlet(
            skeleton, np.ones((2, 25)), tmp_path / "a.png", frame=6
        )
    with pytest.raises(KskelError, match="25"):
        plots.plot_actionlet(
            np.ones((2, 6, 18, 3)), np.ones((2, 18)), tmp_path / "a.png"
        )
    assert not os.listdir(tmp_path)


def test_plot_average_motion(rng, tmp_path):
    path = plots.plot_average_motion(
        _skeleton(rng), tmp_path / "mean.png", num_frames=3
    )
    _assert_png(path)


def test_plot_tsne_and_confusion(rng, tmp_path):
    names = [f"class {k}" for k in range(5)]
    labels = np.arange(40) % 5
    tsne_png = plots.plot_tsne(
        rng.normal(size=(40, 2)), labels, names, tmp_path / "t.png"
    )
    _assert_png(tsne_png)
    logits = rng.normal(size=(40, 5))
    _assert_png(plots.plot_confusion(logits, labels, names, tmp_path / "c.png"))
    with pytest.raises(KskelError, match="labels must lie"):
        plots.plot_tsne(
            np.zeros((2, 2)), np.array([0, 5]), names, tmp_path / "x.png"
        )
    with pytest.raises(KskelError, match=r"expected \(n, 5\)"):
        plots.plot_confusion(
            np.zeros((2, 4)), np.zeros(2), names, tmp_path / "x.png"
        )


def test_confusion_matrix_hand_computed():
    predictions = np.array([0, 1, 1, 2, 0, 0])
    labels = np.array([0, 1, 2, 2, 2, 0])
    counts = plots.confusion_matrix(predictions, labels, 4)
    np.testing.assert_array_equal(
        counts,
        [[2, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]],
    )
    np.testing.assert_allclose(
        plots.row_normalise(counts),
        [[1, 0, 0, 0], [0, 1, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0]],
    )


def _summary_tags(logdir):
    import tensorflow as tf

    tags = {}
    for name in os.listdir(logdir):
        events = tf.compat.v1.train.summary_iterator(os.path.join(logdir, name))
        for event in events:
            for value in event.summary.value:
                tags[value.tag] = event.step
    return tags


def test_log_images_to_tensorboard(rng, tmp_path):
    path = plots.plot_average_motion(_skeleton(rng), tmp_path / "m.png")
    plots.log_images_to_tensorboard(
        tmp_path / "logs", {"average_motion": path, "again": path}, step=7
    )
    assert _summary_tags(tmp_path / "logs") == {
        "average_motion": 7,
        "again": 7,
    }


# ---------------------------------------------------------------------------
# python -m kskel.visualize on a tiny ActCLR run.


@pytest.fixture(scope="module")
def actclr_run(tmp_path_factory):
    """(data_dir, model_dir) of a 1-epoch, 2-step ActCLR pretraining run.

    The train step runs eagerly: tracing ActCLR's step costs ~20 s of a
    2-core CI machine, two eager steps a few seconds.
    """
    import tensorflow as tf

    from data_prep import synthetic
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import run_pretraining

    root = tmp_path_factory.mktemp("visualize")
    data_dir = str(root / "data")
    synthetic.generate_dataset(data_dir, 200, seed=0)
    config = PretrainConfig(
        method="actclr",
        data_dir=data_dir,
        model_dir=str(root / "run"),
        base_width=4,
        hidden_dim=16,
        feature_dim=16,
        queue_size=64,
        batch_size=16,
        epochs=1,
        steps_per_epoch=2,
        actclr_topk=16,
        key_init="copy",
    )
    tf.config.run_functions_eagerly(True)
    try:
        run_pretraining(config)
    finally:
        tf.config.run_functions_eagerly(False)
    return data_dir, config.model_dir


def _visualize(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "kskel.visualize", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_visualize_cli_end_to_end(actclr_run, tmp_path, rng):
    from kskel.data import schema

    data_dir, run_dir = actclr_run
    manifest = schema.load_manifest(data_dir)
    test_size = manifest["splits"]["test"]["num_samples"]
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    np.save(evaluation / "test_logits.npy", rng.normal(size=(test_size, 16)))
    np.save(evaluation / "test_labels.npy", np.arange(test_size) % 16)
    out = tmp_path / "out"
    result = _visualize(
        f"--pretrained={run_dir}",
        f"--data_dir={data_dir}",
        "--split=test",
        f"--model_dir={out}",
        f"--logits_from={evaluation}",
        "--num_samples=2",
        "--max_points=20",
        "--batch_size=32",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = [
        "tsne",
        "confusion",
        "actionlet_0",
        "actionlet_1",
        "average_motion",
    ]
    for name in names:
        _assert_png(str(out / f"{name}.png"))
        assert f"wrote {out / name}.png" in result.stdout
    assert not (out / "actionlet_2.png").exists()
    # One epoch was trained: the images are logged at step 1.
    assert _summary_tags(out / "logs") == dict.fromkeys(names, 1)

    scores = json.loads((out / "actionlet_scores.json").read_text())
    assert scores["num_samples"] == test_size
    assert scores["split"] == "test" and scores["pretrained"] == run_dir
    assert test_size <= scores["num_bodies"] <= 2 * test_size
    rate = scores["ground_truth_rate"]
    assert 0 < rate["cell"] < rate["joint"] < 1
    for level in ("cell", "joint"):
        for key in ("iou", "auc"):
            value = scores[level][key]
            assert value is None or 0.0 <= value <= 1.0
    assert "actionlet on" in result.stdout
    assert "joint speed (no model)" in result.stdout


def _config(run_dir, data_dir, out, **overrides):
    from kskel.visualize import VisualizeConfig

    config = VisualizeConfig(
        pretrained=run_dir,
        data_dir=data_dir,
        model_dir=str(out),
        max_points=20,
        num_samples=1,
    )
    return dataclasses.replace(config, **overrides)


def test_visualize_scores_other_actionlet_forms_of_one_run(
    actclr_run, tmp_path
):
    from kskel.models import actionlet
    from kskel.pretraining import ACTCLR_GRADIENT_ACTIVATIONS
    from kskel.pretraining import ACTCLR_MASK_SMOOTHINGS
    from kskel.visualize import run_visualization

    # The CLIs' choices (pretrain and visualize) are the model's.
    assert set(ACTCLR_GRADIENT_ACTIVATIONS) == set(
        actionlet.GRADIENT_ACTIVATIONS
    )
    assert set(ACTCLR_MASK_SMOOTHINGS) == set(actionlet.SMOOTHINGS)
    data_dir, run_dir = actclr_run
    run = run_visualization(_config(run_dir, data_dir, tmp_path / "run"))
    own = run["scores"]
    # The run was trained with the CLI's defaults, the paper's forms.
    assert (own["gradient_activation"], own["mask_smoothing"]) == (
        "relu",
        "adjacency",
    )
    official = run_visualization(
        _config(
            run_dir,
            data_dir,
            tmp_path / "official",
            gradient_activation="none",
            mask_smoothing="body_part",
            mask_threshold=0.0,
        )
    )["scores"]
    assert (official["gradient_activation"], official["mask_smoothing"]) == (
        "none",
        "body_part",
    )
    assert official["mask_threshold"] == 0.0
    # Cells are on from 0.3 of each body's peak; from the peak, fewer are.
    peak = run_visualization(
        _config(run_dir, data_dir, tmp_path / "peak", mask_threshold=1.0)
    )["scores"]
    assert peak["mask_threshold"] == 1.0
    assert 0 < peak["actionlet_mean"] < own["actionlet_mean"]
    # Each form alone changes the map (seen unclipped, relative to its
    # peak: at 0.3 this barely trained network's map is all on).
    for name, value in (
        ("gradient_activation", "none"),
        ("mask_smoothing", "body_part"),
    ):
        other = run_visualization(
            _config(
                run_dir,
                data_dir,
                tmp_path / name,
                mask_threshold=1.0,
                **{name: value},
            )
        )["scores"]
        assert other[name] == value
        assert other["actionlet_mean"] != peak["actionlet_mean"]


def test_actionlet_flags_need_an_actclr_run():
    from kskel.visualize import _check_no_actionlet_flags

    config = _config("/runs/moco", "/data", "/out")
    _check_no_actionlet_flags(config, "skeletonclr")  # None given.
    for overrides, flag in (
        ({"gradient_activation": "relu"}, "--gradient_activation"),
        ({"mask_smoothing": "adjacency"}, "--mask_smoothing"),
        ({"mask_threshold": 0.3}, "--mask_threshold"),
    ):
        with pytest.raises(KskelError, match=f"{flag}: only an ActCLR run"):
            _check_no_actionlet_flags(
                dataclasses.replace(config, **overrides), "skeletonclr"
            )


def test_visualize_errors(actclr_run, tmp_path):
    from kskel.data import schema
    from kskel.visualize import run_visualization

    data_dir, run_dir = actclr_run
    out = tmp_path / "out"
    # Not a pretraining --model_dir: one line on stderr, exit 1, no output.
    config_file = os.path.join(run_dir, "config.json")
    result = _visualize(
        f"--pretrained={config_file}",
        f"--data_dir={data_dir}",
        f"--model_dir={out}",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: --pretrained={config_file}: a file; pass the --model_dir "
        "of a pretraining run (with config.json and checkpoints/)."
    ]
    assert not out.exists()

    bad_labels = tmp_path / "bad_labels"
    bad_labels.mkdir()
    np.save(bad_labels / "test_logits.npy", np.zeros((2, 16)))
    np.save(bad_labels / "test_labels.npy", np.array([0, 16]))
    cases = [
        ({"pretrained": str(tmp_path)}, "no config.json"),
        ({"logits_from": str(bad_labels)}, r"outside \[0, 16\)"),
        ({"split": "dev"}, "--split=dev"),
        ({"max_points": 3}, "--max_points"),
        ({"logits_from": str(tmp_path)}, "no test_logits.npy"),
        ({"gradient_activation": "abs"}, "--gradient_activation"),
        ({"mask_smoothing": "graph"}, "--mask_smoothing"),
        ({"mask_threshold": 1.5}, "--mask_threshold"),
    ]
    for overrides, match in cases:
        config = _config(run_dir, data_dir, out, **overrides)
        with pytest.raises(KskelError, match=match):
            run_visualization(config)

    sample = schema.Sample(
        skeleton=np.ones((2, 20, 25, 3), np.float32),
        label=0,
        name="a",
        num_frames=20,
    )
    other = tmp_path / "other"
    schema.write_dataset(
        other,
        {"test": [sample], "empty": []},
        layout="ntu25",
        class_names=["x"],
        preprocessing={},
    )
    with pytest.raises(KskelError, match="--split=empty.*no samples"):
        run_visualization(_config(run_dir, str(other), out, split="empty"))
    with pytest.raises(KskelError, match="pretrained on"):
        run_visualization(_config(run_dir, str(other), out))
    assert not out.exists()


def test_demo_flagfile_validates(actclr_run, monkeypatch):
    from kskel.flag_config import config_from_flagfile
    from kskel.visualize import VisualizeConfig

    monkeypatch.chdir(ROOT)
    config = config_from_flagfile(VisualizeConfig, "configs/visualize_demo.cfg")
    assert config.pretrained == "work_dir/actclr_demo"
    assert config.data_dir == "data/synthetic" and config.split == "test"
    # --pretrained names the demo run's output; every other flag holds.
    dataclasses.replace(config, pretrained=actclr_run[1]).validate()

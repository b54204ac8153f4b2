"""Pretraining runs end to end, checkpoints every epoch and resumes."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kskel.data import schema
from kskel.errors import KskelError
from kskel.pretraining import PretrainConfig
from kskel.pretraining import run_pretraining


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("pretrain") / "data"
    rng = np.random.default_rng(0)

    def samples(count, prefix):
        for i in range(count):
            skeleton = 0.1 * rng.normal(size=(2, 16, 25, 3))
            yield schema.Sample(
                skeleton=skeleton.astype("float32"),
                label=i % 3,
                name=f"{prefix}{i}",
                num_frames=16,
            )

    schema.write_dataset(
        path,
        {"train": samples(16, "a"), "test": samples(8, "b")},
        layout="ntu25",
        class_names=["a", "b", "c"],
        preprocessing={},
        samples_per_shard=10,
    )
    return str(path)


def _config(data_dir, model_dir, **overrides):
    config = PretrainConfig(
        data_dir=data_dir,
        model_dir=str(model_dir),
        epochs=2,
        batch_size=8,
        queue_size=16,
        base_width=4,
        hidden_dim=16,
        feature_dim=8,
    )
    return dataclasses.replace(config, **overrides)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"method": "simclr"}, "--method"),
        ({"queue_size": 20}, "--queue_size=20 must be a multiple"),
        ({"aug_method": "12x"}, "--aug_method"),
        ({"stream": "velocity"}, "--stream"),
        ({"epochs": 0}, "--epochs"),
        ({"init_from": "/nonexistent.keras"}, "--init_from"),
        ({"lr_milestones": (0,)}, "--lr_milestones"),
        ({"queue_init": "warm"}, "--queue_init"),
        ({"actclr_query_similarity": "dot"}, "--actclr_query_similarity"),
        ({"actclr_mask_threshold": -0.1}, "--actclr_mask_threshold"),
        ({"actclr_gradient_activation": "abs"}, "--actclr_gradient_activation"),
        ({"actclr_mask_smoothing": "graph"}, "--actclr_mask_smoothing"),
    ],
)
def test_bad_flags_are_named(tmp_path, overrides, flag):
    config = _config(str(tmp_path), tmp_path / "run", **overrides)
    with pytest.raises(KskelError, match=flag):
        config.validate()


def test_runs_saved_before_a_flag_keep_the_official_behaviour(tmp_path):
    from kskel.pretraining import SETTINGS_BEFORE_THEIR_FLAG
    from kskel.pretraining import load_config

    config = dataclasses.asdict(_config(str(tmp_path), tmp_path))
    official = SETTINGS_BEFORE_THEIR_FLAG
    for name in official:
        del config[name]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_config(str(tmp_path))
    assert loaded.actclr_mask_threshold == 0.0
    assert loaded.actclr_query_similarity == "squared"
    assert loaded.actclr_gradient_activation == "none"
    assert loaded.actclr_mask_smoothing == "body_part"
    # Today's defaults apply to new runs only: the paper's.
    fresh = _config(str(tmp_path), tmp_path)
    assert fresh.actclr_mask_threshold == 0.3
    assert fresh.actclr_query_similarity == "cosine"
    assert fresh.actclr_gradient_activation == "relu"
    assert fresh.actclr_mask_smoothing == "adjacency"
    assert all(getattr(fresh, name) != official[name] for name in official)


def test_resuming_with_another_actionlet_is_refused(tmp_path):
    from kskel.pretraining import SETTINGS_BEFORE_THEIR_FLAG
    from kskel.pretraining import _check_resumable

    # An ActCLR run saved before the actionlet flags: the official forms.
    saved = dataclasses.asdict(
        _config(str(tmp_path), tmp_path, method="actclr")
    )
    for name in SETTINGS_BEFORE_THEIR_FLAG:
        del saved[name]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    today = _config(str(tmp_path), tmp_path, method="actclr")
    with pytest.raises(KskelError) as error:
        _check_resumable(today)
    for flag in (
        "--actclr_mask_threshold",
        "--actclr_gradient_activation",
        "--actclr_mask_smoothing",
    ):
        assert flag in str(error.value)
    # The same run resumes with the forms it was trained with.
    _check_resumable(
        dataclasses.replace(today, epochs=5, **SETTINGS_BEFORE_THEIR_FLAG)
    )
    # A SkeletonCLR run has no actionlet: the ActCLR defaults do not matter.
    saved["method"] = "skeletonclr"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    _check_resumable(dataclasses.replace(today, method="skeletonclr"))


def test_unknown_split_and_oversized_batch(data_dir, tmp_path):
    with pytest.raises(KskelError, match="--train_split=val"):
        run_pretraining(_config(data_dir, tmp_path / "a", train_split="val"))
    with pytest.raises(KskelError, match="--batch_size=32 is larger"):
        run_pretraining(
            _config(data_dir, tmp_path / "b", batch_size=32, queue_size=32)
        )


def _variables(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    names = [
        n
        for n, _ in tf.train.list_variables(checkpoint)
        if n.startswith(("model_variables/", "optimizer_variables/"))
    ]
    return {n: reader.get_tensor(n) for n in names}


# AimCLR holds SkeletonCLR's whole state (networks, queue, pointer,
# optimizer) plus the epoch its mining depends on.
@pytest.mark.parametrize("method", ["aimclr"])
def test_resume_continues_where_it_stopped(data_dir, tmp_path, method):
    straight = tmp_path / "straight"
    result = run_pretraining(
        _config(data_dir, straight, method=method, epochs=3)
    )
    assert len(result["history"]["loss"]) == 3
    assert np.isfinite(result["history"]["loss"]).all()
    assert (straight / "query_network.keras").exists()

    resumed = tmp_path / "resumed"
    run_pretraining(_config(data_dir, resumed, method=method, epochs=2))
    again = run_pretraining(_config(data_dir, resumed, method=method, epochs=3))
    assert len(again["history"]["loss"]) == 1  # Only epoch 3 was run.
    checkpoints = sorted(p.name for p in (resumed / "checkpoints").iterdir())
    assert "ckpt-3.index" in checkpoints

    a = _variables(str(straight / "checkpoints" / "ckpt-3"))
    b = _variables(str(resumed / "checkpoints" / "ckpt-3"))
    assert a.keys() == b.keys()
    # Same optimizer state, queue, pointer, epoch and random-number states:
    # the resumed run ends where the uninterrupted one does (up to float
    # round-off).
    import keras

    model = keras.models.load_model(straight / "query_network.keras")
    # Every query and key variable (both networks' batch-norm statistics
    # and random states included) is in the checkpoint.
    assert len([n for n in a if n.startswith("model_")]) > 2 * len(
        model.variables
    )
    for name in a:
        np.testing.assert_allclose(
            a[name].astype(float),
            b[name].astype(float),
            atol=1e-5,
            err_msg=name,
        )


def test_resume_refuses_other_architecture(data_dir, tmp_path):
    run_pretraining(_config(data_dir, tmp_path / "run", epochs=1))
    with pytest.raises(KskelError, match="--feature_dim"):
        run_pretraining(
            _config(data_dir, tmp_path / "run", epochs=2, feature_dim=16)
        )
    # Loss scaling changes the optimizer state; bfloat16 does not.
    with pytest.raises(KskelError, match="--precision"):
        run_pretraining(
            _config(
                data_dir, tmp_path / "run", epochs=2, precision="mixed_float16"
            )
        )


def test_init_from_copies_query_network_into_both_encoders(data_dir, tmp_path):
    import keras

    from kskel.pretraining import build_model
    from kskel.pretraining import initialise_from

    first = tmp_path / "first"
    run_pretraining(_config(data_dir, first, epochs=1))
    path = str(first / "query_network.keras")
    config = _config(data_dir, tmp_path / "second", init_from=path)
    model = build_model(config, (2, 16, 25, 3))
    initialise_from(model, path)
    source = keras.models.load_model(path)
    for network in (model.query, model.key):
        for target, value in zip(network.weights, source.weights):
            np.testing.assert_array_equal(np.asarray(target), np.asarray(value))
    result = run_pretraining(dataclasses.replace(config, epochs=1))
    assert np.isfinite(result["history"]["loss"]).all()
    wrong = _config(data_dir, tmp_path / "third", base_width=8)
    with pytest.raises(
        KskelError, match="--init_from=.*architectures differ|shape"
    ):
        initialise_from(build_model(wrong, (2, 16, 25, 3)), path)


def test_queue_init_keys_starts_from_key_projections(data_dir, tmp_path):
    from kskel.evaluation import features
    from kskel.pretraining import build_model
    from kskel.pretraining import initial_queue_keys

    config = _config(data_dir, tmp_path / "run", queue_init="keys")
    model = build_model(config, (2, 16, 25, 3))
    keys = initial_queue_keys(config, model.key)
    projections, _ = features.extract(
        model.key, data_dir, "train", projection=True
    )
    # The 16 training samples in a seeded order: every one exactly once.
    assert keys.shape == (16, 8)
    np.testing.assert_allclose(
        np.sort(keys, axis=0), np.sort(projections, axis=0), rtol=1e-5
    )
    model.fill_queue(keys)
    queue = np.asarray(model.queue)
    np.testing.assert_allclose(
        queue * np.linalg.norm(keys, axis=1, keepdims=True), keys, atol=1e-5
    )
    result = run_pretraining(dataclasses.replace(config, epochs=1))
    assert np.isfinite(result["history"]["loss"]).all()


def test_cli_flagfile_and_one_line_errors(data_dir, tmp_path):
    flagfile = tmp_path / "run.cfg"
    flagfile.write_text(
        "\n".join(
            [
                f"--data_dir={data_dir}",
                f"--model_dir={tmp_path / 'cli'}",
                "--epochs=1",
                "--batch_size=8",
                "--queue_size=16",
                "--base_width=4",
                "--hidden_dim=16",
                "--feature_dim=8",
            ]
        )
    )
    command = [sys.executable, "-m", "kskel.pretrain", f"--flagfile={flagfile}"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done: 1 epochs" in result.stdout
    bad = subprocess.run(
        [*command, "--temperature=0"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: --temperature=0.0: expected > 0."]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    run_pretraining(_config(data_dir, run, epochs=1))
    # An infinite learning rate makes the first update's weights infinite,
    # so the loss of epoch 2's second step is NaN on any machine (a finite
    # 1e30 can leave batch norm's outputs finite for a while).
    with pytest.raises(KskelError, match="loss became nan at epoch 2") as error:
        run_pretraining(
            _config(data_dir, run, epochs=3, learning_rate=float("inf"))
        )
    assert str(run / "checkpoints") in str(error.value)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(
        "ckpt-1"
    )


def test_sigkill_mid_epoch_then_resume_finishes(data_dir, tmp_path):
    import os
    import signal
    import time

    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "kskel.pretrain",
        f"--data_dir={data_dir}",
        f"--model_dir={run}",
        "--epochs=3",
        "--batch_size=4",
        "--queue_size=16",
        "--base_width=4",
        "--hidden_dim=16",
        "--feature_dim=8",
        "--verbose=0",
    ]
    state = run / "checkpoints" / "checkpoint"
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (state.exists() and "ckpt-1" in state.read_text()):
            assert process.poll() is None, "the run ended before epoch 2"
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not (run / "query_network.keras").exists()

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert "done: 3 epochs" in resumed.stdout
    load = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np, keras, kskel.encoders; "
            "m = keras.models.load_model(sys.argv[1]); "
            "print(m(np.zeros((1, 2, 16, 25, 3), 'float32')).shape)",
            str(run / "query_network.keras"),
        ],
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr[-2000:]
    assert "(1, 8)" in load.stdout


def test_logs_learning_rate_queue_statistics_and_actionlet(data_dir, tmp_path):
    run = tmp_path / "run"
    result = run_pretraining(
        _config(
            data_dir,
            run,
            method="actclr",
            epochs=2,
            learning_rate=0.25,
            lr_milestones=(1,),
            actclr_topk=8,
        )
    )
    history = result["history"]
    # The rate each epoch trained with (the decay acts from epoch 2).
    np.testing.assert_allclose(history["learning_rate"], [0.25, 0.025])
    assert all(-1.0 <= c <= 1.0 for c in history["queue_mean_cosine"])
    assert all(s > 0 for s in history["queue_std"])
    tags = set()
    for path in (run / "logs" / "pretrain").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert {"actionlet", "actionlet_mean"} <= tags


def test_queue_statistics_of_collapsed_and_spread_queues():
    from kskel.pretrain_callbacks import queue_statistics

    collapsed = queue_statistics(np.ones((8, 4)))
    assert collapsed["queue_mean_cosine"] == pytest.approx(1.0)
    assert collapsed["queue_std"] == pytest.approx(0.0)
    # Rows +e_i and -e_i: every pair of distinct rows has cosine 0 except
    # the 4 opposite pairs (-1): mean = -8 / 56.
    spread = queue_statistics(np.concatenate([np.eye(4), -np.eye(4)]))
    assert spread["queue_mean_cosine"] == pytest.approx(-8 / 56)

"""`python -m kskel.launch`: cluster configs and the report of a failure."""

import json
import os
import sys

import pytest

from kskel import launch
from kskel.errors import KskelError

STUB = os.path.join(os.path.dirname(__file__), "launch_stub_worker.py")


def _pretrain_flags(tmp_path):
    return [
        f"--data_dir={tmp_path / 'data'}",
        f"--model_dir={tmp_path / 'run'}",
        "--batch_size=8",
        "--queue_size=32",
    ]


def test_tf_configs_name_the_cluster_and_each_worker():
    configs = [json.loads(c) for c in launch.tf_configs([4000, 4001, 4002])]
    cluster = ["127.0.0.1:4000", "127.0.0.1:4001", "127.0.0.1:4002"]
    for index, config in enumerate(configs):
        assert config["cluster"] == {"worker": cluster}
        assert config["task"] == {"type": "worker", "index": index}


def test_free_ports_are_distinct():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3 and all(0 < p < 65536 for p in ports)


def test_pretrain_flags_are_validated_before_workers_start(tmp_path):
    with pytest.raises(KskelError, match="--batch_size"):
        launch.pretrain_config([*_pretrain_flags(tmp_path), "--batch_size=1"])
    with pytest.raises(KskelError, match="no_such_flag"):
        launch.pretrain_config(["--no_such_flag=1"])
    config = launch.pretrain_config(_pretrain_flags(tmp_path))
    assert config.strategy == "multiworker"


def test_describe_exit():
    assert launch.describe_exit(3) == "exit code 3"
    assert launch.describe_exit(-9) == "signal SIGKILL"


def test_failed_worker_is_named_and_the_others_stopped(tmp_path, capsys):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    logs = tmp_path / "logs"
    code = launch.run_cluster(
        _pretrain_flags(tmp_path),
        num_workers=3,
        log_dir=str(logs),
        program=[sys.executable, STUB, str(pid_dir)],
    )
    assert code == 1
    err = capsys.readouterr().err
    log = logs / "worker-1.log"
    assert f"error: worker 1 of 3 failed with exit code 3 (log: {log})" in err
    assert "stub worker 1: simulated failure" in err  # The log's tail.
    assert f"{tmp_path / 'run'}/checkpoints" in err
    # Workers 0 and 2 were stopped, not left running.
    for index in (0, 2):
        pid_file = pid_dir / f"worker-{index}.pid"
        if pid_file.exists():  # It may have been stopped before writing.
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid_file.read_text()), 0)

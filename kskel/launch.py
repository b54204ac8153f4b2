"""Starts N local pretraining workers to try multi-worker training.

Usage:
    python -m kskel.launch --num_workers=2 -- \\
        --flagfile=configs/skeletonclr_demo.cfg --model_dir=work_dir/mw

Everything after `--` is passed to `python -m kskel.pretrain` in each
worker, with `--strategy=multiworker` added. Worker i listens on
127.0.0.1 and gets a `TF_CONFIG` naming the whole cluster and itself as
worker i; worker 0 is the chief, whose output is shown here and which alone
writes into `--model_dir`. Every worker's output also goes to
`WORKER_LOGS/worker-<i>.log`.

If a worker exits with an error, the others are stopped and one line names
the worker, its exit status and its log; the command exits with status 1.
Running the same command again resumes from the last checkpoint (the
default `--resume`). The pretraining flags are validated before any worker
starts. On several machines, start `python -m kskel.pretrain
--strategy=multiworker` on each with its own `TF_CONFIG` instead (see
README).
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags

from kskel.errors import KskelError

_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", 2, "Number of local worker processes (>= 1)."
)
_PORT = flags.DEFINE_integer(
    "port",
    0,
    "First port of the workers (worker i listens on PORT + i); 0 picks "
    "free ports.",
)
_WORKER_LOGS = flags.DEFINE_string(
    "worker_logs",
    "",
    "Directory of the workers' logs (default: a new temporary directory).",
)

_POLL_SECONDS = 0.2
_STOP_SECONDS = 10.0
_LOG_TAIL_LINES = 15


def pretrain_config(args):
    """The validated `PretrainConfig` that workers get from `args`."""
    from kskel.flag_config import config_from_flags
    from kskel.flag_config import define_flags
    from kskel.pretraining import PretrainConfig

    values = flags.FlagValues()
    define_flags(PretrainConfig, values)
    try:
        unparsed = values(["kskel.pretrain", *args])
    except flags.Error as err:
        raise KskelError(f"pretraining flags after '--': {err}") from None
    if len(unparsed) > 1:
        raise KskelError(
            f"pretraining flags after '--': unexpected arguments "
            f"{unparsed[1:]}."
        )
    config = config_from_flags(PretrainConfig, values)
    return dataclasses.replace(config, strategy="multiworker").validate()


def free_ports(count):
    """`count` TCP ports on 127.0.0.1 that are free right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_configs(ports):
    """The `TF_CONFIG` JSON of each worker of a local cluster."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(len(ports))
    ]


def _worker_env(config_json):
    env = dict(os.environ, TF_CONFIG=config_json)
    # Workers import this very kskel, wherever the launcher found it.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (root, env.get("PYTHONPATH", "")) if p
    )
    return env


def _copy_output(pipe, log_file):
    """Copies a worker's output to its log and to this process's stdout."""
    out = sys.stdout.buffer
    while chunk := os.read(pipe.fileno(), 65536):
        log_file.write(chunk)
        log_file.flush()
        out.write(chunk)
        out.flush()


class Worker:
    """One `python -m kskel.pretrain` process of the local cluster."""

    def __init__(self, index, command, config_json, log_path, show_output):
        self.index = index
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE if show_output else self._log,
            stderr=subprocess.STDOUT,
            env=_worker_env(config_json),
        )
        self._copier = None
        if show_output:
            self._copier = threading.Thread(
                target=_copy_output,
                args=(self.process.stdout, self._log),
                daemon=True,
            )
            self._copier.start()

    def poll(self):
        return self.process.poll()

    def stop(self):
        """Terminates the process (killed if it outlives the grace time)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.close()

    def close(self):
        if self._copier is not None:
            self._copier.join(_STOP_SECONDS)
        self._log.close()


def describe_exit(code):
    """`'exit code 3'` or `'signal SIGKILL'` for a `Popen.returncode`."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _log_tail(path, lines=_LOG_TAIL_LINES):
    with open(path, "rb") as file:
        text = file.read().decode("utf-8", "replace")
    text = text.replace("\r", "\n")
    return [line for line in text.splitlines() if line.strip()][-lines:]


def run_cluster(args, num_workers, port=0, log_dir="", program=None):
    """Runs `num_workers` local workers until all finish or one fails.

    Args:
        args: list of `kskel.pretrain` flags (without `--strategy`).
        num_workers: int, worker processes.
        port: int, first port; 0 picks free ones.
        log_dir: str, where `worker-<i>.log` go; empty: a new temporary
            directory.
        program: list of str, the command each worker runs before its
            flags. Defaults to `python -m kskel.pretrain`.

    Returns:
        0 when every worker succeeded; 1 after a failure, reported on
        stderr naming the worker, its exit status and its log.
    """
    config = pretrain_config(args)
    log_dir = log_dir or tempfile.mkdtemp(prefix="kskel-launch-")
    os.makedirs(log_dir, exist_ok=True)
    ports = (
        list(range(port, port + num_workers))
        if port
        else free_ports(num_workers)
    )
    program = program or [sys.executable, "-m", "kskel.pretrain"]
    command = [*program, *args, "--strategy=multiworker"]
    print(
        f"starting {num_workers} workers on 127.0.0.1 ports "
        f"{', '.join(map(str, ports))}; logs in {log_dir}",
        flush=True,
    )
    workers = []
    try:
        for index, config_json in enumerate(tf_configs(ports)):
            workers.append(
                Worker(
                    index,
                    command,
                    config_json,
                    os.path.join(log_dir, f"worker-{index}.log"),
                    show_output=index == 0,
                )
            )
        while True:
            codes = [worker.poll() for worker in workers]
            failed = [w for w, c in zip(workers, codes) if c not in (None, 0)]
            if failed:
                _report_failure(failed[0], workers, config)
                return 1
            if all(code == 0 for code in codes):
                return 0
            time.sleep(_POLL_SECONDS)
    finally:
        for worker in workers:
            worker.stop()


def _report_failure(worker, workers, config):
    for other in workers:
        other.stop()
    tail = _log_tail(worker.log_path)
    if worker.index != 0 and tail:
        print(f"--- last lines of {worker.log_path} ---", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
    checkpoints = f"{config.model_dir.rstrip('/')}/checkpoints"
    print(
        f"error: worker {worker.index} of {len(workers)} failed with "
        f"{describe_exit(worker.process.returncode)} (log: "
        f"{worker.log_path}); the other workers were stopped. Run the same "
        f"command again to resume from the last checkpoint in {checkpoints}.",
        file=sys.stderr,
        flush=True,
    )


def _stop_on_sigterm(signum, frame):
    del frame
    raise SystemExit(128 + signum)


def main(argv):
    if _NUM_WORKERS.value < 1:
        raise KskelError(f"--num_workers={_NUM_WORKERS.value}: expected >= 1.")
    if not 0 <= _PORT.value < 65536:
        raise KskelError(f"--port={_PORT.value}: expected 0 to 65535.")
    # Workers are stopped in `run_cluster`'s cleanup on SIGTERM too.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return run_cluster(
        argv[1:], _NUM_WORKERS.value, _PORT.value, _WORKER_LOGS.value
    )


def _guarded(argv):
    try:
        sys.exit(main(argv))
    except KskelError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(_guarded)

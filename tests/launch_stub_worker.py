"""A stand-in worker for the launcher tests: no TensorFlow, instant start.

Worker 1 prints a line and exits with status 3; every other worker writes
its process id to `PID_DIR/worker-<i>.pid` and waits to be stopped.
Run as `python tests/launch_stub_worker.py PID_DIR [flags...]`.
"""

import json
import os
import pathlib
import sys
import time


def main(pid_dir):
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    index = task["index"]
    if index == 1:
        print("stub worker 1: simulated failure", flush=True)
        sys.exit(3)
    path = pathlib.Path(pid_dir) / f"worker-{index}.pid"
    path.write_text(str(os.getpid()))
    time.sleep(120)


if __name__ == "__main__":
    main(sys.argv[1])

"""Shared plumbing of the `python -m kskel.<verb>` command-line tools."""

import sys

from absl import app

from kskel.errors import KskelError


def run(main):
    """Runs an absl `main(argv)`; a `KskelError` becomes one line, exit 1."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        try:
            sys.exit(main(argv))
        except KskelError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    app.run(guarded)

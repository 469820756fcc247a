"""Gaze360 / RT-GENE 3D gaze estimation: `python gaze360_main.py --yaml configs/gaze360/<variant>.yaml [--flag value]`.

Trains (resuming automatically), evaluates, or with --eval_weights only evaluates (and runs --analysis). `--help`
lists every option by group; `--print_config` prints the resolved configuration. Errors end with one line and an exit
status (2 bad input, 1 failed run, 130 / 143 Ctrl-C / SIGTERM), as main.py's.
"""
from __future__ import annotations

import sys

from engine.config import ConfigError, parse_command_line
from gaze360.options import GAZE360


def main(argv: list[str] | None = None) -> int:
    try:
        config, print_config = parse_command_line(argv, GAZE360)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if print_config:
        print(config.to_yaml(), end="")
        return 0
    from engine.run import run_job  # imported late so --help and --print_config stay fast
    from gaze360.train import run

    return run_job(run, config)  # one line and an exit status for every error a user can cause, as main.py

if __name__ == "__main__":
    sys.exit(main())

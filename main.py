"""Gaze following with diffusion models: `python main.py --yaml_diffusion A.yaml --yaml_gaze B.yaml [--flag value]`.

Trains (resuming automatically), evaluates, or with --eval_weights only evaluates. `--help` lists every option by
group; `--print_config` prints the resolved configuration.
"""
from __future__ import annotations

import sys

from engine.config import ConfigError, parse_command_line


def main(argv: list[str] | None = None) -> int:
    try:
        config, print_config = parse_command_line(argv)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if print_config:
        print(config.to_yaml(), end="")
        return 0
    return run_job(config)


def run_job(config) -> int:
    """Run the job; the project's errors (a user's input, a refused folder, a stop, a full disk) end it with one line
    on stderr and an exit status instead of a traceback: 2 for bad input, 1 for a failed run, 130 / 143 for Ctrl-C /
    SIGTERM (engine.run.run_job, shared with gaze360_main.py)."""
    from engine.run import run_job as run_reporting_errors  # imported late so --help and --print_config stay fast
    from engine.train import run

    return run_reporting_errors(run, config)


if __name__ == "__main__":
    sys.exit(main())

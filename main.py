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
    from engine.train import run  # imported late so --help and --print_config stay fast
    from datasets.errors import DataError

    try:
        run(config)
    except FloatingPointError as error:  # a NaN / inf loss: say where, keep the last good checkpoint
        print(str(error), file=sys.stderr)
        return 1
    except DataError as error:  # bad data (datasets/validation.py): the file and line, no traceback
        print(f"data error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

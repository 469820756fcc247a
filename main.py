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
    """Run the job; the project's errors (a user's input, a stop, a full disk) end it with one line on stderr and an
    exit status instead of a traceback: 2 for bad input, 1 for a failed run, 130 / 143 for Ctrl-C / SIGTERM."""
    from datasets.errors import DataError  # imported late so --help and --print_config stay fast
    from engine.checkpoint import CheckpointError, DiskFullError, no_space_left
    from engine.run_folder import RunLocked
    from engine.stopping import RunStopped
    from engine.train import run

    try:
        run(config)
    except RunStopped as stopped:
        print(str(stopped), file=sys.stderr)
        return stopped.exit_status
    except KeyboardInterrupt:  # before the signal handlers are in place
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as error:  # raised once the checkpoint or the data are read (e.g. a resume that differs)
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except DataError as error:  # bad data (datasets/validation.py): the file and line, no traceback
        print(f"data error: {error}", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ModuleNotFoundError) as error:  # ... and a backbone plug-in not found
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (FloatingPointError, RunLocked, DiskFullError) as error:  # NaN loss, folder in use, disk full
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        if not no_space_left(error):
            raise
        print(f"error: no space left on the device while writing the run's files under {config.output_dir} "
              f"({error}); the last checkpoint is intact: free some space and run the same command to resume",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run engine both trainers share -- main.py's (engine.train) and gaze360_main.py's (gaze360.train): where a job
writes, what it resumes, which stored configuration it runs with, how it stops, and how its errors end the program.

    with open_run(config, TRAINER) as job:    # checks the tag and output_dir, locks the run folder, resumes
        ... job.config, job.folder, job.state (a checkpoint to resume, or None), job.changes, job.stop ...

- Evaluation (`eval_weights`): the model and data pipeline follow the configuration stored in the checkpoint, with the
  trainer's evaluation-time options applied; results go to a fresh folder (engine.run_folder.evaluation_dir).
- Training: a fresh folder, the trainer's own run resumed from its checkpoint (with the stored configuration: an
  option given differently is an error unless the trainer declares it resumable; options read only at a run's start,
  such as initial weights, are refused with the reason), or with `no_resume` the old run moved aside to a new name.
- One job per run folder (engine.run_folder.RunLock); Ctrl-C / SIGTERM are handled while the job runs
  (engine.stopping.StopRequests: `job.stop`).
- `run_job(run, config)`: the entry points' one place that turns the project's errors into one line on stderr and an
  exit status (2 bad input, 1 failed run, 130 / 143 stopped by Ctrl-C / SIGTERM).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.checkpoint import CheckpointError, DiskFullError, check_trainer, load_checkpoint, no_space_left
from engine.config import Config, ConfigError, check_buildable
from engine.run_folder import (
    FolderRefused, RunLock, RunLocked, check_output_dir, check_tag, evaluation_dir, training_action, trim_log,
)
from engine.stopping import RunStopped, StopRequests
from engine.stored_config import Change, apply_stored_config, given_options, stored_configuration

# Options naming a weight file a run starts from: --no_resume keeps them pointing at the file when it moves aside.
WEIGHT_FILE_OPTIONS = ("init_weights", "backbone_weights")


class RunFailed(RuntimeError):
    """The run cannot go on (exit status 1); the message says why."""


@dataclass(frozen=True)
class Trainer:
    """What the run engine needs to know of one trainer (its name is its option table's `prog`, e.g. "main.py").

    evaluation_time / resumable: {option: why} of the options an evaluation / a resume may change (engine.stored_config
    tables); start_only: options read only when a run starts (initial weights): a resume refuses a new value, since it
    would not be used; subruns: glob patterns of sub-folders that are parts of one run (RT-GENE's fold_<k>);
    resumes(config): the checkpoints a training job continues, relative to its run folder."""

    evaluation_time: Mapping[str, str]
    resumable: Mapping[str, str]
    start_only: tuple[str, ...] = ()
    subruns: tuple[str, ...] = ()
    resumes: Callable[[Any], list[str]] = lambda config: ["last.pt"]


@dataclass
class Run:
    """An open run: its folder (locked by this job on rank 0), the configuration it runs with, the checkpoint state to
    resume from (None: a fresh start or an evaluation), the options changed from the stored configuration, and the
    stop requests (Ctrl-C / SIGTERM) of the job."""

    trainer: Trainer
    folder: Path
    config: Any
    state: dict | None = None
    changes: list[Change] = field(default_factory=list)
    stop: StopRequests | None = None

    def resume(self, checkpoint_path: Path) -> tuple[dict | None, Any, list[Change]]:
        """(state, config, changes) to continue from `checkpoint_path` (one of the run's checkpoints, e.g. an RT-GENE
        fold's last.pt): see resume_checkpoint."""
        return resume_checkpoint(checkpoint_path, self.config, self.trainer)


@contextmanager
def open_run(config, trainer: Trainer, *, is_main: bool = True,
             share_folder: Callable[[Path], Path] | None = None):
    """Open the run of `config` (see the module docstring). Nothing is written before the tag, output_dir and run
    folder are checked and the folder is locked; under torchrun only rank 0 (`is_main`) locks and moves, and
    `share_folder` gives every rank the folder rank 0 chose."""
    with StopRequests() as stop:
        if config.eval_weights:  # the model and data come from the checkpoint's stored configuration
            config, changes = evaluation_configuration(config, trainer)
            _check_location(config)
            folder, action = evaluation_dir(config.output_dir, config.tag, config.eval_weights, trainer.subruns), None
        else:
            _check_location(config)
            folder, changes = Path(config.output_dir) / config.tag, []
            action = training_action(folder, config.table.prog, _option_names(config.table), config.no_resume,
                                     [folder / path for path in trainer.resumes(config)], trainer.subruns)
            if action != "resume":
                check_buildable(config)  # a fresh run builds these options' model: refused before the folder is used
        if share_folder is not None:
            folder = share_folder(folder)
        with RunLock(folder) if is_main else nullcontext() as lock:
            job = Run(trainer, folder, config, changes=changes, stop=stop)
            if action == "move" and lock is not None:
                aside = lock.move_run_aside()
                print(f"--no_resume: moved the previous run aside to {aside}")
                job.config = _follow_moved_weights(job.config, folder, aside)
            elif action == "restart" and is_main:
                print(f"{folder}: the run there stopped before its first checkpoint: starting it again")
            if action == "resume":  # the run's own last.pt (sub-runs, e.g. RT-GENE folds, resume their own)
                job.state, job.config, job.changes = job.resume(folder / "last.pt")
            yield job


def _check_location(config) -> None:
    check_tag(config.tag, config.sources.get("tag", "default"), config.output_dir)
    check_output_dir(config.output_dir, config.sources.get("output_dir", "default"))


def _option_names(table) -> set[str]:
    return set(table.by_name) | set(table.aliases)


def _follow_moved_weights(config, folder: Path, aside: Path):
    """Weight files a fresh run starts from that were inside the folder just moved aside are read from there."""
    moved = {}
    for name in WEIGHT_FILE_OPTIONS:
        value = config.to_dict().get(name)
        if not value:
            continue
        try:
            inside = Path(value).resolve().relative_to(folder.resolve())
        except ValueError:
            continue
        moved[name] = str(aside / inside)
        print(f"--no_resume: {name} {value} moved aside with the previous run: reading {moved[name]}")
    return config.replace(**moved) if moved else config


def evaluation_configuration(config, trainer: Trainer) -> tuple[Any, list[Change]]:
    """The configuration an evaluation of `config.eval_weights` runs with: the checkpoint's stored one with the
    evaluation-time options given applied (said aloud), or `config` itself for a file that stores none (a
    .safetensors export, another project's file, an original checkpoint)."""
    weights = str(config.eval_weights)
    if weights.endswith(".safetensors"):
        check_buildable(config)  # the model these options describe is the one evaluated
        return config, []
    checkpoint = load_checkpoint(weights, trust_legacy=getattr(config, "trust_legacy_checkpoint", False))
    check_trainer(checkpoint, weights, config.table.prog)
    stored = stored_configuration(checkpoint, config.table)
    if stored is None:
        print(f"{weights} stores no configuration: the model is built from the YAML files and flags given")
        check_buildable(config)
        return config, []
    config, changes = apply_stored_config(stored, given_options(config), trainer.evaluation_time, checkpoint=weights,
                                          purpose="evaluation", table=reading_stored(config.table))
    changes = [change for change in changes if change.name not in ("tag", "output_dir", "eval_weights")]
    print(f"evaluating {weights} with the configuration stored in it"
          + (": evaluation-time options changed: " + "; ".join(map(str, changes)) if changes else ""))
    return config, changes


def resume_checkpoint(checkpoint_path: Path, config, trainer: Trainer) -> tuple[dict | None, Any, list[Change]]:
    """(state, config, changes) to continue the run of `checkpoint_path`: its stored configuration with the options
    that may change on resume (`trainer.resumable`) applied, or (None, config, []) for a fresh start."""
    checkpoint_path = Path(checkpoint_path)
    if config.no_resume or not checkpoint_path.is_file():
        return None, config, []
    state = load_checkpoint(checkpoint_path)
    check_trainer(state, checkpoint_path, config.table.prog)
    if "config" not in state:
        raise CheckpointError(f"{checkpoint_path} stores no configuration, so the run cannot be resumed safely: "
                              "start a new run (--no_resume or another --tag)")
    given = given_options(config)
    _refuse_start_options(state["config"], given, trainer, checkpoint_path, state, config.table)
    config, changes = apply_stored_config(state["config"], given, trainer.resumable, checkpoint=str(checkpoint_path),
                                          purpose="resume", table=reading_stored(config.table))
    if changes:
        print(f"resuming with changed options (allowed on resume) at step {state['step']}: "
              + "; ".join(map(str, changes)))
    return state, config, changes


def reading_stored(table):
    """`table` whose cross-option checks read a stored configuration as its trainer read the options it was given: a
    stored value at its option's default counts as not set (checks such as "has no effect unless ..." ask whether
    an option was set, and a checkpoint stores every option)."""
    if isinstance(table.validate, _StoredReading):
        return table
    return dataclasses.replace(table, validate=_StoredReading(table))


@dataclass(frozen=True)
class _StoredReading:
    """The validate function of `reading_stored` (a class, so that a configuration stays picklable)."""

    table: Any

    def __call__(self, config) -> None:
        defaults = {option.name: option.default for option in self.table.options}
        values = config.to_dict()
        sources = {name: "default" if ("(stored)" in source or source.startswith("default"))
                   and values[name] == defaults[name] else source for name, source in config.sources.items()}
        self.table.validate(Config(values, sources, self.table))


def _refuse_start_options(stored: Mapping[str, Any], given: Mapping[str, tuple[Any, str]], trainer: Trainer,
                          checkpoint_path: Path, state: dict, table) -> None:
    """A resume continues from its checkpoint's weights: a new value of an option read only at the start of a run
    (the initial weights) would be recorded but never used, so it is an error saying what to do."""
    stored = {table.aliases.get(name, name): value for name, value in stored.items()}
    for name in trainer.start_only:
        if name not in given or name not in table.by_name:
            continue
        value, source = given[name]
        was = stored.get(name, table.by_name[name].default)
        if value != was:
            raise ConfigError(
                f"{checkpoint_path}: '{name}' is {was!r} in the checkpoint but {value!r} in {source}: it is read only "
                f"when a run starts, and this run resumes from its checkpoint (step {state.get('step')}), whose "
                "weights it would not change: resume without it (the run keeps its stored value), or start a new run "
                "from it with --no_resume (the old run is moved aside) or another --tag")


# --- the files of a run ---------------------------------------------------------------------------------------------

def resume_history(state: dict | None, changes: list[Change]) -> list[dict]:
    """The options changed on every resume of a run so far (stored in its checkpoints), this one's included."""
    if state is None:
        return []
    return list(state.get("config_changes", [])) + [
        {"step": state["step"], "option": c.name, "was": c.stored, "now": c.given, "source": c.source}
        for c in changes]


def history_comments(history: list[dict]) -> str:
    """YAML comments (the file stays loadable) listing the options changed on each resume, with the step."""
    return "".join(f"# changed on resume at step {entry['step']}: {entry['option']}: {entry['was']!r} -> "
                   f"{entry['now']!r} ({entry['source']})\n" for entry in history)


def change_comments(changes: list[Change], what: str) -> str:
    """YAML comments listing the options an evaluation changed from the checkpoint's configuration."""
    return "".join(f"# {what}-time option changed from the checkpoint's configuration: {change}\n"
                   for change in changes)


def evaluation_record(config, changes: list[Change]) -> dict:
    """What metrics.json says about the configuration an evaluation ran with."""
    record = {"configuration": "stored in the checkpoint" if any(
        "(stored)" in source for source in config.sources.values()) else "YAML files and flags given"}
    if changes:
        record["changed_from_checkpoint"] = {change.name: {"checkpoint": change.stored, "evaluation": change.given,
                                                           "source": change.source} for change in changes}
    return record


def write_run_files(folder: Path, config, state: dict | None, history: list[dict],
                    redone: tuple[str, ...] = ()) -> None:
    """A training job's start: config.yaml (with the resume history as comments), and metrics.jsonl trimmed to the
    step the job continues from (`redone`: record types logged at that step by work the job repeats)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(config.to_yaml() + history_comments(history))
    step = state["step"] if state is not None else 0
    if trim_log(folder / "metrics.jsonl", step, redone if state is not None else ()):
        print(f"metrics.jsonl: dropped the records logged after step {step} by the interrupted job"
              if state is not None else "metrics.jsonl: dropped the records of the job that wrote no checkpoint")


def checkpoints_on_disk(folder: Path) -> str:
    """What a run folder holds to resume from, for messages after a failed write."""
    found = sorted(p for p in Path(folder).rglob("*.pt") if "evaluations" not in p.relative_to(folder).parts)
    if not found:
        return f"no checkpoint of this run is on disk in {folder} yet"
    listed = ", ".join(f"{p.relative_to(folder)} (written "
                       f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(p.stat().st_mtime))})" for p in found[:4])
    return f"on disk in {folder}: {listed}"


# --- the entry points' errors ----------------------------------------------------------------------------------------

def run_job(run: Callable[[Any], Any], config) -> int:
    """Run `run(config)`; the project's errors (a user's input, a refused folder, a stop, a full disk) end it with one
    line on stderr and an exit status instead of a traceback: 2 for bad input, 1 for a failed run, 130 / 143 for
    Ctrl-C / SIGTERM."""
    from datasets.errors import DataError  # imported late so --help and --print_config stay fast

    def fail(prefix: str, error: BaseException, status: int) -> int:
        print(f"{prefix}{error}", file=sys.stderr)
        return status

    try:
        run(config)
    except RunStopped as stopped:
        return fail("", stopped, stopped.exit_status)
    except KeyboardInterrupt:  # before the signal handlers are in place
        print("interrupted", file=sys.stderr)
        return 130
    except ConfigError as error:  # also raised once the checkpoint or the data are read (e.g. a resume that differs)
        return fail("configuration error: ", error, 2)
    except DataError as error:  # bad data (datasets/validation.py): the file and line, no traceback
        return fail("data error: ", error, 2)
    except (CheckpointError, FolderRefused, FileNotFoundError, PermissionError, NotADirectoryError,
            IsADirectoryError, ModuleNotFoundError) as error:  # a file, folder or plug-in given that cannot be used
        return fail("error: ", error, 2)
    except (FloatingPointError, RunLocked, DiskFullError, RunFailed) as error:  # NaN loss, folder in use, disk full
        return fail("error: ", error, 1)
    except OSError as error:
        if not no_space_left(error):
            raise
        where = Path(config.output_dir) / config.tag
        print(f"error: no space left on the device while writing the run's files under {where} ({error}); "
              f"{checkpoints_on_disk(where) if where.is_dir() else 'nothing was written there'}: free some space and "
              "run the same command again", file=sys.stderr)
        return 1
    return 0

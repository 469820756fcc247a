"""Where a job writes, for both trainers: the run folder `<output_dir>/<tag>`, its lock, and the rule that every output
location is fresh, the job's own, or refused with the reason -- nothing a user made is overwritten or moved unless
asked for by name.

- A tag is a folder name, never a path (`check_tag`); `output_dir` must be a writable folder (`check_output_dir`).
- Training (`training_action`) writes into a fresh folder, resumes its own trainer's run there, or with `--no_resume`
  moves that run aside to `<tag>-<timestamp>` (`RunLock.move_run_aside`); a folder holding another trainer's run, an
  evaluation's results or anything else is refused.
- An evaluation (`evaluation_dir`) writes into a fresh folder, or into `<tag>/evaluations/<weights>-<timestamp>` when
  the tag holds a run or earlier results, so nothing is overwritten.
- The lock is `<run folder>/run.lock`, created atomically (O_EXCL) and holding the holder's PID, host and process start
  time. A second job on the same folder stops with a message naming the holder; a lock whose process is gone (killed,
  crashed: same host, no process with that PID and start time) is taken over with a notice.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine.config import ConfigError
from pretrained.files import TRAINERS, CheckpointError, load_checkpoint, trainer_of

LOCK_NAME = "run.lock"
TRAINING_FILES = ("last.pt", "config.yaml", "metrics.jsonl")
CHECKPOINT_PATTERNS = ("last.pt", "best.pt", "ckpt_epoch_*.pt")
RESULT_FILES = ("evaluation.yaml", "metrics.json", "evaluations")  # what an evaluation leaves
# What a job leaves before it has results of its own (its lock, temporary files of atomic writes, the data check's
# report, the offline wandb folder): a folder holding only these is as good as fresh.
LEFTOVERS = (LOCK_NAME, "data_validation.csv", "wandb")
EVALUATIONS = "evaluations"


class RunLocked(RuntimeError):
    """Another live job holds the run folder's lock."""


class FolderRefused(ValueError):
    """An output location that is neither fresh nor the job's own (or cannot be written): the message says what it
    holds and what to do instead."""


# --- names and locations ---------------------------------------------------------------------------------------------

def check_tag(tag: str, source: str = "tag", output_dir: str | Path = "output") -> None:
    """A tag names one folder inside output_dir: refuse the empty tag, '.', '..', separators, absolute paths, hidden
    names (output_dir's own `.data_validation` cache lives there), control characters and over-long names."""
    text = str(tag)
    problem = None
    if not text:
        problem = "is empty"
    elif "/" in text or "\\" in text or (os.altsep and os.altsep in text):
        problem = "is a path (it has a separator)"
    elif text.startswith("."):
        problem = "starts with '.' ('.', '..' and hidden names are not run folders)"
    elif any(ord(char) < 32 or ord(char) == 127 for char in text):
        problem = "holds control characters"
    elif len(text.encode()) > 255:
        problem = "is longer than a file name may be (255 bytes)"
    if problem is None:
        return
    hint = ""
    if "/" in text and text.strip("./"):  # say how to write where the path points
        target = os.path.normpath(os.path.join(str(output_dir), text))
        hint = f"; to write to {target}, give --output_dir {os.path.dirname(target) or '.'} --tag " \
               f"{os.path.basename(target)}"
    raise ConfigError(f"'tag' ({source}) = {text!r} {problem}: a tag is the name of the run's folder inside "
                      f"output_dir, not a path{hint}")


def check_output_dir(output_dir: str | Path, source: str = "output_dir") -> None:
    """output_dir is a folder (or can be made one) this job may write into, and not a run folder itself."""
    path = Path(output_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise FolderRefused(f"'output_dir' ({source}) = {str(output_dir)!r} {where}, not a folder: give a folder "
                            "that holds one sub-folder per run")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == path else f" (it would be made inside {existing})"
        raise FolderRefused(f"'output_dir' ({source}) = {str(output_dir)!r} is not writable{where}: permission "
                            "denied or a read-only file system; give a folder this job may write into")
    contents = inspect_folder(path) if existing == path else None
    if contents is not None and contents.kind in ("run", "results"):
        raise FolderRefused(f"'output_dir' ({source}) = {str(output_dir)!r} is itself a run folder (it holds "
                            f"{', '.join(contents.examples)}): give the folder that holds the runs")


# --- what a folder holds ---------------------------------------------------------------------------------------------

@dataclass
class FolderContents:
    """What `inspect_folder` found: `kind` is "absent", "file", "empty" (nothing or only LEFTOVERS), "run" (a training
    run: checkpoints, config.yaml, metrics.jsonl, at the top or in the trainer's sub-run folders), "results" (an
    evaluation's) or "other" (files none of this project's jobs writes)."""

    path: Path
    kind: str
    examples: list[str] = field(default_factory=list)  # a few of its entries, for messages
    checkpoints: list[Path] = field(default_factory=list)  # its run's *.pt files (top and sub-runs)
    configs: list[Path] = field(default_factory=list)  # its run's config.yaml files

    def stored_options(self) -> set[str] | None:
        """The option names of the run's first readable config.yaml, or None."""
        for path in self.configs:
            try:
                stored = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue
            if isinstance(stored, dict):  # grouped by section (Config.to_yaml) or flat
                names = set()
                for key, value in stored.items():
                    names |= set(value) if isinstance(value, dict) else {key}
                return names
        return None


def _leftover(name: str) -> bool:
    return name in LEFTOVERS or (name.startswith(".") and (name.endswith(".tmp") or ".stale." in name))


def inspect_folder(folder: str | Path, subruns: tuple[str, ...] = ()) -> FolderContents:
    """What `folder` holds (see FolderContents); `subruns`: glob patterns of sub-folders that are parts of one run
    (the Gaze360 trainer's RT-GENE `fold_<k>`)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return FolderContents(folder, "absent")
    if not folder.is_dir():
        return FolderContents(folder, "file", [folder.name])
    entries = sorted(entry.name for entry in folder.iterdir() if not _leftover(entry.name))
    parts = [folder] + sorted(p for pattern in subruns for p in folder.glob(pattern) if p.is_dir())
    # Files only: a sub-folder named like a checkpoint (a run tagged "last.pt") is not one.
    checkpoints = sorted(p for part in parts for pattern in CHECKPOINT_PATTERNS for p in part.glob(pattern)
                         if p.is_file())
    configs = [part / "config.yaml" for part in parts if (part / "config.yaml").is_file()]
    runs = [part for part in parts if any((part / name).is_file() for name in TRAINING_FILES)]
    examples = [f"{entry}/" if (folder / entry).is_dir() else entry for entry in entries[:6]]
    if checkpoints or runs:
        return FolderContents(folder, "run", examples, checkpoints, configs)
    if any(name in entries for name in RESULT_FILES):
        return FolderContents(folder, "results", examples)
    return FolderContents(folder, "other" if entries else "empty", examples)


def holds_training_run(folder: str | Path) -> bool:
    """Whether `folder` holds a training run's files (a checkpoint, its config.yaml or its log)."""
    return inspect_folder(folder).kind == "run"


def run_trainer(contents: FolderContents, trainer: str, own_options: set[str]) -> str | None:
    """Which trainer's run `contents` holds: `trainer` when its config.yaml names only options of `own_options`, the
    other trainer when it has that one's options (or its checkpoint says so), None when it cannot be told."""
    names = contents.stored_options()
    if names is not None:
        return trainer if names <= own_options else trainer_of({"config": dict.fromkeys(names)})
    for path in contents.checkpoints[:1]:  # no readable config.yaml: ask a checkpoint
        try:
            return trainer_of(load_checkpoint(path))
        except (CheckpointError, OSError):
            return None
    return None


# --- the policies ----------------------------------------------------------------------------------------------------

def training_action(folder: Path, trainer: str, own_options: set[str], no_resume: bool, resumes: list[Path],
                    subruns: tuple[str, ...] = ()) -> str:
    """What a training job does with its run folder: "fresh" (nothing there), "resume" (its own run; `resumes` are the
    checkpoints it continues), "move" (--no_resume on its own run) or "restart" (its own run that wrote no checkpoint
    yet); anything else is refused (FolderRefused) saying what the folder holds."""
    contents = inspect_folder(folder, subruns)
    if contents.kind in ("absent", "empty"):
        return "fresh"
    if contents.kind == "file":
        raise FolderRefused(f"{folder} is a file, not a run folder: give another --tag or --output_dir")
    listed = ", ".join(contents.examples)
    if contents.kind == "results":
        raise FolderRefused(f"{folder} holds the results of an evaluation ({listed}), not a training run: train under "
                            "another --tag (evaluations write into a fresh folder or into a run's evaluations/)")
    if contents.kind == "other":
        raise FolderRefused(f"{folder} holds files no training run writes ({listed}): nothing there is overwritten "
                            "or moved; train under another --tag or --output_dir")
    owner = run_trainer(contents, trainer, own_options)
    if owner is not None and owner != trainer:
        raise FolderRefused(f"{folder} holds a run of {TRAINERS[owner]} ({listed}): {trainer} neither resumes nor "
                            "moves it; train under another --tag")
    if no_resume:
        return "move"
    if any(path.is_file() for path in resumes):
        return "resume"
    if contents.checkpoints:
        found = ", ".join(str(p.relative_to(folder)) for p in contents.checkpoints[:4])
        wanted = ", ".join(str(p.relative_to(folder)) for p in resumes)
        raise FolderRefused(f"{folder} holds checkpoints ({found}) but not {wanted}, which this job would resume (a "
                            "removed last.pt, or a run of other options, e.g. another dataset): nothing is "
                            "overwritten; --no_resume moves that run aside to a new name, or train under another --tag")
    return "restart"


def evaluation_dir(output_dir: str | Path, tag: str, weights: str | Path, subruns: tuple[str, ...] = ()) -> Path:
    """Where an evaluation of `weights` writes: `<output_dir>/<tag>` when that is fresh; when it holds a training run
    or earlier results, which must not be overwritten, `<output_dir>/<tag>/evaluations/<weights name>-<timestamp>`;
    a folder holding anything else is refused."""
    folder = Path(output_dir) / tag
    contents = inspect_folder(folder, subruns)
    if contents.kind in ("absent", "empty"):
        return folder
    if contents.kind == "file":
        raise FolderRefused(f"{folder} is a file, not a folder: evaluate into another --tag")
    if contents.kind == "other":
        raise FolderRefused(f"{folder} holds files no run or evaluation writes ({', '.join(contents.examples)}): "
                            "nothing there is overwritten; evaluate into another --tag or --output_dir")
    name = f"{Path(weights).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, suffix = folder / EVALUATIONS / name, 1
    while candidate.exists():
        suffix += 1
        candidate = folder / EVALUATIONS / f"{name}-{suffix}"
    return candidate


# --- the lock --------------------------------------------------------------------------------------------------------

def _process_start(pid: int) -> str | None:
    """The start time of process `pid` (Linux /proc; None where unknown), so a PID reused later is not mistaken for
    the lock's holder."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the lock's holder still runs (assumed when it is on another host: that cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user has this PID
        pass
    started = _process_start(pid)
    return started is None or holder.get("started") in (None, started)


class RunLock:
    """`with RunLock(folder):` holds `folder/run.lock` for the job's lifetime (released on exit and on errors)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.held = False

    def acquire(self) -> "RunLock":
        try:
            return self._acquire()
        except OSError as error:  # read-only, permission denied, a file in the way, ... (a full disk: exit 1 later)
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise FolderRefused(f"cannot write the run folder {self.folder}: {error.strerror or error} "
                                f"({error.filename or self.path}): give a --tag / --output_dir this job may write "
                                "into") from error

    def _acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _process_start(os.getpid()),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(5):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is not None and _alive(holder):
                    raise RunLocked(
                        f"{self.folder} is in use by another job (PID {holder.get('pid')} on {holder.get('host')}, "
                        f"since {holder.get('since')}): wait for it to end, or use another --tag; if that job is no "
                        f"longer running, delete {self.path}") from None
                self._take_over(holder)
                continue
            with os.fdopen(handle, "w") as stream:
                json.dump(record, stream)
            self.held = True
            return self
        raise RunLocked(f"{self.path}: could not take the lock (other jobs keep taking it over)")

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text() or "null")
        except FileNotFoundError:
            return {}  # released meanwhile: try again
        except (OSError, ValueError):
            return None  # unreadable (a job killed while writing it): stale
        return holder if isinstance(holder, dict) else None

    def _take_over(self, holder: dict | None) -> None:
        if holder == {}:
            return
        stale = self.path.with_name(f".{LOCK_NAME}.stale.{os.getpid()}")
        try:
            os.rename(self.path, stale)  # atomic: of two jobs taking over, one renames, the other finds a new lock
        except FileNotFoundError:
            return
        stale.unlink(missing_ok=True)
        who = f"PID {holder.get('pid')} on {holder.get('host')}" if holder else "an unreadable lock"
        print(f"{self.folder}: taking over the lock of a job that is no longer running ({who})")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def move_run_aside(self) -> Path:
        """`--no_resume` on a folder holding a run: rename it to `<folder>-<timestamp>` and start an empty folder
        (locked again). Evaluations still writing into its evaluations/ keep it in place (RunLocked). Returns the new
        name of the old run."""
        for lock in sorted(self.folder.glob(f"{EVALUATIONS}/*/{LOCK_NAME}")):
            holder = RunLock(lock.parent)._read()
            if holder and _alive(holder):
                raise RunLocked(f"{lock.parent} is in use by an evaluation (PID {holder.get('pid')} on "
                                f"{holder.get('host')}): --no_resume cannot move {self.folder} aside until it ends")
        aside = self.folder.with_name(f"{self.folder.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        suffix = 1
        while aside.exists():
            suffix += 1
            aside = aside.with_name(f"{self.folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{suffix}")
        os.rename(self.folder, aside)
        (aside / LOCK_NAME).unlink(missing_ok=True)
        self.held = False
        self.acquire()
        return aside

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def trim_log(path: str | Path, step: int, redone: tuple[str, ...] = ()) -> int:
    """Drop the records of `path` (metrics.jsonl) logged after `step`, the step a resumed run restarts from (and those
    of the `redone` types logged at `step` itself: work after the checkpoint that the resumed run repeats), so each is
    logged once. Rewritten atomically; returns the number of records dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            later = record.get("step", 0) > step or (record.get("step") == step and record.get("type") in redone)
        except (ValueError, AttributeError):
            later = True  # a line torn by a killed job
        if later:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, path)
    return dropped

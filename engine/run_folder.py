"""One job per run folder, and nothing of a finished run lost: the run lock, moving an old run aside for
`--no_resume`, the folder an evaluation writes to, and the log trimmed to the resumed step.

The lock is `<run folder>/run.lock`, created atomically (O_EXCL) and holding the holder's PID, host and process start
time. A second job on the same folder stops with a message naming the holder; a lock whose process is gone (killed,
crashed: same host, no process with that PID and start time) is taken over with a notice.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = "run.lock"
TRAINING_FILES = ("last.pt", "config.yaml", "metrics.jsonl")


class RunLocked(RuntimeError):
    """Another live job holds the run folder's lock."""


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
        (locked again). Returns the new name of the old run."""
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


def holds_training_run(folder: str | Path) -> bool:
    """Whether `folder` holds a training run's files (a checkpoint, its config.yaml or its log)."""
    folder = Path(folder)
    return any((folder / name).exists() for name in TRAINING_FILES) or any(folder.glob("ckpt_epoch_*.pt"))


def evaluation_dir(output_dir: str | Path, tag: str, weights: str | Path) -> Path:
    """Where an evaluation of `weights` writes: `<output_dir>/<tag>`, unless that folder holds a training run, whose
    results must not be overwritten: then `<output_dir>/<tag>/evaluations/<weights name>-<timestamp>`."""
    folder = Path(output_dir) / tag
    if not holds_training_run(folder):
        return folder
    name = f"{Path(weights).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, suffix = folder / "evaluations" / name, 1
    while candidate.exists():
        suffix += 1
        candidate = folder / "evaluations" / f"{name}-{suffix}"
    return candidate


def trim_log(path: str | Path, step: int) -> int:
    """Drop the records of `path` (metrics.jsonl) logged after `step`, the step a resumed run restarts from, so
    each step is logged once. Rewritten atomically; returns the number of records dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            later = json.loads(line).get("step", 0) > step
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

"""Clean stops: Ctrl-C (SIGINT) and SIGTERM (what clusters send before they kill a job) let the training step under
way finish, a checkpoint be written, and the job exit with status 130 / 143 and a message saying how to resume.

Outside a training step (setting up, evaluating) there is nothing to finish: the signal stops the job at once, and the
last checkpoint is kept. A second signal always stops at once. Loader worker processes ignore both signals (the main
process stops them), so a Ctrl-C in a terminal, which reaches every process of the job, does not kill a worker in
the middle of a batch.
"""
from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(Exception):
    """The job was stopped by a signal; `exit_status` is 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def stopped_message(signum: int, step: int, checkpoint_path) -> str:
    """What a job stopped by a signal after a checkpoint says (both trainers)."""
    return (f"stopped by {signal_name(signum)} after step {step}: wrote {checkpoint_path}; run the same command "
            "again to resume")


class StopRequests:
    """`with StopRequests() as stop:` handles SIGINT and SIGTERM while the block runs (previous handlers are restored
    after it). While `stop.deferring` is true (the training loop sets it) a first signal is only recorded in
    `stop.signum`, which the loop reads after each step; otherwise a signal raises RunStopped at once."""

    def __init__(self):
        self.signum: int | None = None
        self.deferring = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            print(f"\n{signal_name(signum)} received: finishing the current step and writing a checkpoint "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)
            return
        self.signum = signum
        raise RunStopped(signum, f"stopped by {signal_name(signum)}; the last checkpoint written is kept (run the "
                                 "same command again to resume from it)")

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader `worker_init_fn`: workers leave SIGINT / SIGTERM to the main process, which ends them."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)

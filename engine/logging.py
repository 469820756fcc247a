"""Run logging: every record goes to `<run_dir>/metrics.jsonl`; Weights & Biases mirrors it unless `no_wandb`.

Without a wandb account, or when its server cannot be reached (checked first with a short connection timeout, so a
cluster node without internet does not hang for minutes in wandb's retries), wandb runs offline with a notice (sync
later with `wandb sync <run_dir>/wandb/...`).
"""
from __future__ import annotations

import json
import netrc
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

WANDB_CONNECT_TIMEOUT = 5.0  # seconds: the reachability probe of the wandb server
WANDB_INIT_TIMEOUT = 30.0  # seconds wandb.init may take online before the run falls back to offline
DEFAULT_WANDB_URL = "https://api.wandb.ai"


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_server_problem(timeout: float = WANDB_CONNECT_TIMEOUT) -> str | None:
    """Why the wandb server (WANDB_BASE_URL, default api.wandb.ai) cannot be reached, or None when a TCP connection
    to it opens within `timeout` seconds."""
    url = os.environ.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL
    parts = urlsplit(url if "://" in url else f"https://{url}")
    try:
        port = parts.port or (80 if parts.scheme == "http" else 443)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return None
    except (OSError, ValueError) as error:  # DNS failure, refused, unreachable, timed out; a malformed URL
        return f"{url} cannot be reached ({type(error).__name__}: {error})"


def _offline_notice(run_dir, why: str) -> None:
    print(f"wandb: {why}: logging offline under {run_dir}/wandb; upload later with `wandb sync`", file=sys.stderr)


class RunLogger:
    """Appends one JSON object per record to metrics.jsonl (type, step, wall time, values) and mirrors to wandb."""

    def __init__(self, run_dir: Path, config, model=None, wandb_run_id: str | None = None, enabled: bool = True):
        """enabled=False (ranks other than 0 under torchrun): log() and close() do nothing."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.wandb = None
        self.wandb_run_id = wandb_run_id
        self.enabled = enabled
        if enabled and not config.no_wandb:
            import wandb

            mode = os.environ.get("WANDB_MODE") or ("online" if wandb_credentials_available() else "offline")
            if mode == "offline" and not os.environ.get("WANDB_MODE"):
                _offline_notice(run_dir, "no account configured (WANDB_API_KEY or `wandb login`)")
            if mode == "online" and (problem := wandb_server_problem()) is not None:
                _offline_notice(run_dir, problem)
                mode = "offline"
            arguments = dict(project="diffusion-gaze", name=config.tag, id=wandb_run_id, resume="allow",
                             dir=str(run_dir), config=config.to_dict())
            try:
                self.wandb = wandb.init(**arguments, mode=mode,
                                        **({"settings": wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT)}
                                           if mode == "online" else {}))
            except wandb.errors.Error as error:  # reachable but not answering in time, a refused key, ...
                if mode != "online":
                    raise
                _offline_notice(run_dir, f"the online run could not start ({type(error).__name__}: "
                                         f"{str(error).strip().splitlines()[0]})")
                self.wandb = wandb.init(**arguments, mode="offline")
            self.wandb_run_id = self.wandb.id
            if config.watch_wandb and model is not None:
                self.wandb.watch(model, log="all", log_freq=config.print_every)

    def log(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        record = {"type": kind, "step": step, "time": time.time(), **values}
        with open(self.path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log({f"{kind}/{key}": value for key, value in values.items()}, step=step)

    def log_images(self, kind: str, step: int, folder: str | Path, files: list[str]) -> None:
        """Mirror image files (the evaluation figures) to wandb as `<kind>/figures/<name>` images."""
        if not self.enabled or self.wandb is None or not files:
            return
        import wandb

        self.wandb.log({f"{kind}/figures/{Path(name).stem}": wandb.Image(str(Path(folder) / name)) for name in files},
                       step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()

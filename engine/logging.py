"""Run logging: every record goes to `<run_dir>/metrics.jsonl`; Weights & Biases mirrors it unless `no_wandb`.

Without a wandb account or network, wandb runs offline (sync later with `wandb sync <run_dir>/wandb/...`).
"""
from __future__ import annotations

import json
import netrc
import os
import time
from pathlib import Path


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


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
            if mode == "offline":
                print("wandb: no account configured (WANDB_API_KEY or `wandb login`): logging offline under "
                      f"{run_dir}/wandb; upload later with `wandb sync`")
            self.wandb = wandb.init(project="diffusion-gaze", name=config.tag, id=wandb_run_id, resume="allow",
                                    dir=str(run_dir), config=config.to_dict(), mode=mode)
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

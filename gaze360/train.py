"""The Gaze360 / RT-GENE job: build everything from the configuration, then one training loop.

`run(config)`: Gaze360 trains one model in <output_dir>/<tag>; RT-GENE runs each configured fold in
<output_dir>/<tag>/fold_<k> and reports the mean test error. Training resumes from last.pt unless `no_resume`,
keeps the epoch with the lowest validation error as best.pt, and finally evaluates best.pt on test and validation
(metrics.json, predictions_<split>.csv). With `eval_weights` it only evaluates (and runs `analysis`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.checkpoint import (
    CHECKPOINT_FORMAT, load_checkpoint, resume_state, rng_state, save_checkpoint, seed_everything, set_rng_state,
)
from engine.data import EpochShuffleSampler
from engine.logging import RunLogger
from engine.optimizer_step import optimizer_step
from engine.train import AMP_DTYPES, autocast_for, resolve_device
from datasets.validation import head_crop_split, validate_splits
from gaze360.build import TARGET_KEYS, make_dataset, make_gaze_loader
from gaze360.checkpoints import model_state_from_checkpoint
from gaze360.evaluate import evaluate_split, format_table, mean_direction, write_metrics
from gaze360.losses import gaze_loss
from gaze360.models import build_model, load_backbone_weights
from gaze360.options import crop_list  # noqa: F401  (kept: main's gaze360.train exported it)
from gaze360.rtgene import fold_subjects

BACKBONE_PARTS = ("stn.", "backbone.", "feature.")  # what freeze_backbone_epochs freezes and init_weights_parts copies


def load_weights(model, path: str, parts: str = "all") -> None:
    """Load a checkpoint of this trainer or an original MultiZoomGaze / Gaze360 .pth.tar into `model`, printing
    how its keys were mapped. parts = backbone: only the BACKBONE_PARTS tensors (all of them must be there)."""
    state, report = model_state_from_checkpoint(load_checkpoint(path), model, str(path))
    print(report)
    if parts == "all":
        model.load_state_dict(state)
        return
    state = {k: v for k, v in state.items() if k.startswith(BACKBONE_PARTS)}
    missing = [k for k in model.state_dict() if k.startswith(BACKBONE_PARTS) and k not in state]
    if missing:
        raise ValueError(f"{path}: init_weights_parts = backbone, but the file lacks {missing[:6]}")
    model.load_state_dict(state, strict=False)
    print(f"{path}: copied the {len(state)} backbone tensors; fusion and head start from their initialisation")


def set_backbone_trainable(model, trainable: bool) -> None:
    for name, parameter in model.named_parameters():
        if name.startswith(BACKBONE_PARTS):
            parameter.requires_grad_(trainable)


def make_optimizer(model, config) -> torch.optim.Adam:
    """Adam (lr, betas, weight decay); the spatial transformer's parameters at lr x stn_lr_multiplier."""
    stn = [p for n, p in model.named_parameters() if n.startswith("stn.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("stn.")]
    groups = [{"params": rest}] + ([{"params": stn, "lr": config.lr * config.stn_lr_multiplier}] if stn else [])
    return torch.optim.Adam(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                            weight_decay=config.weight_decay)


def run(config) -> dict:
    """Train and evaluate (or only evaluate with `eval_weights`); returns the metrics (RT-GENE: per fold + mean)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError("launched with WORLD_SIZE > 1 (torchrun): multi-process training is not supported by "
                           "gaze360_main.py; each process would train alone and overwrite the same run folder")
    run_dir = Path(config.output_dir) / config.tag
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    if config.dataset != "rtgene":
        return run_one(config, run_dir)
    folds = {}
    for fold in config.rtgene_folds:
        print(f"=== RT-GENE fold {fold}: test subjects {fold_subjects(fold)['test']}")
        folds[f"fold_{fold}"] = run_one(config, run_dir / f"fold_{fold}", fold=fold)
    mean = {key: float(np.mean([m["test"]["model"][key] for m in folds.values()]))
            for key in ("all_360_deg", "front_180_deg", "front_facing_deg")}
    baseline = float(np.mean([m["test"]["mean_direction_baseline"]["all_360_deg"] for m in folds.values()]))
    summary = {"folds": folds, "mean_test": mean, "mean_test_baseline_all_360_deg": baseline}
    write_metrics(run_dir / "metrics.json", summary)
    print(f"RT-GENE mean test angular error over folds {list(config.rtgene_folds)}: {mean['all_360_deg']:.2f} deg "
          f"(mean-direction baseline {baseline:.2f} deg)")
    return summary


def run_one(config, run_dir: Path, fold: int | None = None) -> dict:
    """One model: train (resuming), keep the best validation epoch, evaluate; or evaluate / analyse only."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    autocast = autocast_for(config, device)
    model = build_model(config).to(device)
    train_set = make_dataset(config, "train", train=True, fold=fold)
    validation_set = make_dataset(config, "validation", train=False, fold=fold)
    test_set = make_dataset(config, "test", train=False, fold=fold)  # checked now, not after the training
    splits = [head_crop_split(n, d) for n, d in (("train", train_set), ("validation", validation_set), ("test", test_set))]
    if config.missing_frames == "skip":  # the loader skips and counts each unreadable frame: no frame pass to stop on
        splits = [dataclasses.replace(split, images={}, options={**split.options, "frames": "skipped when unreadable"})
                  for split in splits]
    validate_splits(splits, run_dir, Path(config.output_dir) / ".data_validation", config.skip_validation)
    baseline_direction = mean_direction(train_set.gaze)
    for name, dataset in (("train", train_set), ("validation", validation_set)):
        if dataset.skipped:
            print(f"{name}: skipped {dataset.skipped} samples with missing frames, e.g. {dataset.skipped_examples}")
    run_dir.mkdir(parents=True, exist_ok=True)

    if config.eval_weights:
        load_weights(model, config.eval_weights)
        metrics = final_evaluation(model, config, run_dir, device, autocast, baseline_direction, fold,
                                   weights=str(config.eval_weights), validation_set=validation_set)
        if config.analysis != "none":
            from gaze360.analyses import run_analysis

            run_analysis(config.analysis, model, config, run_dir, device, autocast, fold)
        return metrics

    if config.backbone_weights:
        load_backbone_weights(model, config.backbone_weights)
    if config.init_weights:
        load_weights(model, config.init_weights, config.init_weights_parts)
    sampler = EpochShuffleSampler(len(train_set), seed=config.seed)
    train_loader = make_gaze_loader(train_set, config, train=True, sampler=sampler)
    validation_loader = make_gaze_loader(validation_set, config, train=False)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[config.amp] is torch.float16)
    target_key = TARGET_KEYS[config.target]

    epoch, step, best, wandb_run_id = 0, 0, {"epoch": 0, "validation_deg": float("inf")}, None
    checkpoint_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    state = resume_state(checkpoint_path, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        epoch, step, best, wandb_run_id = state["epoch"], state["step"], state["best"], state.get("wandb_run_id")
        print(f"resuming {run_dir} at epoch {epoch}, step {step}")
    (run_dir / "config.yaml").write_text(config.to_yaml())
    logger = RunLogger(run_dir, config, model, wandb_run_id=wandb_run_id)

    while epoch < config.epochs:
        if config.early_stopping_patience and epoch - best["epoch"] >= config.early_stopping_patience:
            print(f"early stopping at epoch {epoch}: no better validation error for "
                  f"{config.early_stopping_patience} epochs (best: epoch {best['epoch']})")
            break
        set_backbone_trainable(model, epoch >= config.freeze_backbone_epochs)
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        model.train()
        started, seen = time.perf_counter(), 0
        unreadable = 0
        for batch in tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False):
            if batch is None or batch["unreadable"]:
                unreadable += config.batch_size if batch is None else batch["unreadable"]
                if batch is None:
                    continue
            with autocast():
                prediction = model(batch["images"].to(device))
            loss = gaze_loss(prediction, batch[target_key].to(device), config)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss is {loss.item()} at step {step + 1}; the last good checkpoint "
                                         f"is kept")
            optimizer_step(loss, optimizer, scaler, config.grad_clip)
            step += 1
            seen += batch["images"].shape[0]
            if step % config.print_every == 0:
                logger.log("train", step, epoch=epoch + 1, loss=loss.item(), lr=optimizer.param_groups[0]["lr"],
                           samples_per_second=seen / max(time.perf_counter() - started, 1e-9))
        epoch += 1
        if unreadable:
            print(f"epoch {epoch}: skipped {unreadable} training samples with unreadable frames (missing_frames: skip)")
        validation = evaluate_split(model, validation_set, validation_loader, config, device, autocast,
                                    baseline_direction)["model"]
        logger.log("validation", step, epoch=epoch, **{k: v for k, v in validation.items()})
        print(f"epoch {epoch}: loss {loss.item():.4f}  validation {validation['all_360_deg']:.2f} deg")
        if validation["all_360_deg"] < best["validation_deg"]:
            best = {"epoch": epoch, "validation_deg": validation["all_360_deg"]}
            save_checkpoint(best_path, {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "epoch": epoch,
                                        "config": config.to_dict()})
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "best": best, "rng": rng_state(),
                 "config": config.to_dict(), "wandb_run_id": logger.wandb_run_id}
        save_checkpoint(checkpoint_path, state)
        if not config.no_save and epoch % config.save_every == 0:
            save_checkpoint(run_dir / f"ckpt_epoch_{epoch}.pt", state)
    logger.close()
    if not best_path.is_file():
        raise RuntimeError(f"{best_path} is missing: no epoch finished with a finite validation error")
    model.load_state_dict(load_checkpoint(best_path)["model"])
    print(f"best validation epoch {best['epoch']} ({best['validation_deg']:.2f} deg): evaluating {best_path}")
    return final_evaluation(model, config, run_dir, device, autocast, baseline_direction, fold,
                            weights=str(best_path), validation_set=validation_set, best=best)


def final_evaluation(model, config, run_dir: Path, device, autocast, baseline_direction, fold, weights: str,
                     validation_set, best: dict | None = None) -> dict:
    """Test and validation errors of `model` with per-sample CSVs; writes and returns metrics.json."""
    metrics = {"weights": weights, "best": best}
    for split, dataset in (("test", make_dataset(config, "test", train=False, fold=fold)),
                           ("validation", validation_set)):
        loader = make_gaze_loader(dataset, config, train=False)
        metrics[split] = evaluate_split(model, dataset, loader, config, device, autocast, baseline_direction,
                                        csv_path=run_dir / f"predictions_{split}.csv")
    write_metrics(run_dir / "metrics.json", metrics)
    print(format_table(metrics))
    return metrics


def load_trained_model(path: str | Path, device: torch.device | str = "cpu"):
    """(model in eval mode, its configuration) of a checkpoint written by this trainer (last.pt, best.pt,
    ckpt_epoch_N.pt): the model is built from the configuration stored in the file, as the trainer builds it."""
    from engine.config import ConfigError, load_config
    from gaze360.options import GAZE360

    checkpoint = load_checkpoint(path)
    stored = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if stored is None or "model" not in checkpoint:
        raise ConfigError(f"{path}: not a checkpoint of the Gaze360 trainer (gaze360_main.py writes 'model' and "
                          "'config'); a bare state dict cannot say which Gaze360 network it holds")
    # Only the values that differ from the defaults: an option left at its default is not "set" (the cross-option
    # checks refuse options set without the option they depend on).
    defaults = {option.name: option.default for option in GAZE360.options}
    stored = {name: value for name, value in stored.items() if name not in defaults or value != defaults[name]}
    try:
        config = load_config((), stored, GAZE360)
    except ConfigError as error:
        raise ConfigError(f"{path}: the Gaze360 configuration stored in it: {error}") from error
    model = build_model(config, len(crop_list(config)))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), config

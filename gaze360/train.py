"""The Gaze360 / RT-GENE job: build everything from the configuration, then one training loop.

`run(config)`: Gaze360 trains one model in <output_dir>/<tag>; RT-GENE runs each configured fold in
<output_dir>/<tag>/fold_<k> and reports the mean test error. Training resumes from last.pt unless `no_resume`,
keeps the epoch with the lowest validation error as best.pt, and finally evaluates best.pt on test and validation
(metrics.json, predictions_<split>.csv). With `eval_weights` it only evaluates (and runs `analysis`).

The run engine of main.py serves this trainer too (engine.run): the run lock, the tag and output checks, `--no_resume`
moving the old run aside, an evaluation into a fresh folder (a run's own `evaluations/`), the stored configuration at
evaluation and on resume (options changed outside EVALUATION_TIME / RESUMABLE are errors), one Checkpointer, and
Ctrl-C / SIGTERM finishing the step and writing a checkpoint that resumes bitwise equal.
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
    CheckpointError, Checkpointer, check_trainer, load_checkpoint, save_checkpoint, seed_everything,
)
from engine.data import EpochShuffleSampler
from engine.logging import RunLogger
from engine.optimizer_step import optimizer_step
from engine.config import ConfigError
from engine.run import (
    RunFailed, Trainer, change_comments, evaluation_record, open_run, resume_history, write_run_files,
)
from engine.stopping import RunStopped, stopped_message
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

# Which options may differ from a checkpoint's stored configuration ({option: why}; tables of the shape of
# engine.stored_config's, until the option declarations carry these rules). Evaluation: every option an evaluation
# does not read (the optimiser, the loss, the run's length, the training augmentations, the starting weights) and
# those that choose how it runs and on what data; never the network or the views it is fed (they decide what the
# weights compute).
EVALUATION_TIME: dict[str, str] = {
    "tag": "output", "output_dir": "output", "device": "execution", "cpu_threads": "execution", "amp": "execution",
    "num_workers": "execution", "skip_validation": "execution", "seed": "evaluation crops' draws",
    "eval_weights": "weights", "print_every": "logging", "no_wandb": "logging", "watch_wandb": "logging",
    "dataset": "test data", "dataset_dir": "test data", "rtgene_face": "test data", "rtgene_folds": "test data",
    "missing_frames": "test data", "batch_size": "evaluation batch", "eval_batch_size": "evaluation batch",
    "front_facing": "test protocol", "front_facing_degrees": "test protocol",
    "eval_random_crop_prob": "evaluation crops", "eval_random_crop_size": "evaluation crops",
    "yaw_decoding": "decoding of the outputs", "analysis": "analysis", "magnification_deltas": "analysis",
    **dict.fromkeys(("no_resume", "no_save", "backbone_weights", "init_weights", "init_weights_parts", "epochs", "lr",
                     "weight_decay", "adam_beta1", "adam_beta2", "grad_clip", "freeze_backbone_epochs",
                     "early_stopping_patience", "save_every", "stn_lr_multiplier", "train_crop_scale",
                     "crop_size_noise", "time_order", "forward_bias", "loss", "pinball_epsilon", "pinball_quantile",
                     "sincos_norm_weight"), "training only"),
}
# Resume: only options that do not change what is trained (every other must match: start a run under another tag).
RESUMABLE: dict[str, str] = {
    "epochs": "length of the run (extend it)", "early_stopping_patience": "length of the run",
    "save_every": "saving cadence", "no_save": "output", "print_every": "logging cadence", "no_wandb": "logging",
    "watch_wandb": "logging", "num_workers": "workers", "cpu_threads": "threads", "eval_batch_size": "evaluation batch",
    "tag": "output (a renamed run folder)", "output_dir": "output (a moved run folder)",
    "dataset_dir": "data location (the same data, moved)", "no_resume": "run control",
    "skip_validation": "run control (the data is the same)", "rtgene_folds": "which folds run (each is its own run)",
    "magnification_deltas": "analyses only",
}


def stored_without_defaults(stored, table) -> dict:
    """A stored configuration without the values at their defaults: the cross-option checks refuse an option *set*
    without the option it depends on, and a stored value counts as set."""
    defaults = {option.name: option.default for option in table.options}
    return {name: value for name, value in stored.items() if name not in defaults or value != defaults[name]}


def resumed_checkpoints(config) -> list[str]:
    """The checkpoints a training job continues: last.pt, or each RT-GENE fold's."""
    if config.dataset == "rtgene":
        return [f"fold_{fold}/last.pt" for fold in config.rtgene_folds]
    return ["last.pt"]


# What the run engine (engine.run) needs to know of this trainer.
TRAINER = Trainer(evaluation_time=EVALUATION_TIME, resumable=RESUMABLE,
                  start_only=("init_weights", "init_weights_parts", "backbone_weights"), subruns=("fold_*",),
                  resumes=resumed_checkpoints)


def load_weights(model, path: str, parts: str = "all") -> None:
    """Load a checkpoint of this trainer or an original MultiZoomGaze / Gaze360 .pth.tar into `model`, printing
    how its keys were mapped. parts = backbone: only the BACKBONE_PARTS tensors (all of them must be there)."""
    state, report = model_state_from_checkpoint(load_checkpoint(path), model, str(path))
    print(report)
    if parts == "all":
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # torch's "Error(s) in loading state_dict": another network's weights
            first = str(error).strip().splitlines()[0]
            raise CheckpointError(f"{path}: its weights do not fit the model of this configuration ({first}): give "
                                  "the options it was trained with") from error
        return
    state = {k: v for k, v in state.items() if k.startswith(BACKBONE_PARTS)}
    missing = [k for k in model.state_dict() if k.startswith(BACKBONE_PARTS) and k not in state]
    if missing:
        raise CheckpointError(f"{path}: init_weights_parts = backbone, but the file lacks {missing[:6]}")
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
        raise ConfigError("launched with WORLD_SIZE > 1 (torchrun): multi-process training is not supported by "
                          "gaze360_main.py; each process would train alone and overwrite the same run folder")
    with open_run(config, TRAINER) as job:
        config, run_dir = job.config, job.folder
        if config.cpu_threads:
            torch.set_num_threads(config.cpu_threads)
        if config.dataset != "rtgene":
            return run_one(config, run_dir, job.stop, job.state, job.changes)
        folds = {}
        for fold in config.rtgene_folds:
            print(f"=== RT-GENE fold {fold}: test subjects {fold_subjects(fold)['test']}")
            state, fold_config, changes = (None, config, job.changes) if config.eval_weights else \
                job.resume(run_dir / f"fold_{fold}" / "last.pt")
            folds[f"fold_{fold}"] = run_one(fold_config, run_dir / f"fold_{fold}", job.stop, state, changes, fold=fold)
    mean = {key: float(np.mean([m["test"]["model"][key] for m in folds.values()]))
            for key in ("all_360_deg", "front_180_deg", "front_facing_deg")}
    baseline = float(np.mean([m["test"]["mean_direction_baseline"]["all_360_deg"] for m in folds.values()]))
    summary = {"folds": folds, "mean_test": mean, "mean_test_baseline_all_360_deg": baseline}
    write_metrics(run_dir / "metrics.json", summary)
    print(f"RT-GENE mean test angular error over folds {list(config.rtgene_folds)}: {mean['all_360_deg']:.2f} deg "
          f"(mean-direction baseline {baseline:.2f} deg)")
    return summary


def run_one(config, run_dir: Path, stop, state: dict | None = None, changes=(), fold: int | None = None) -> dict:
    """One model: train (resuming from `state`), keep the best validation epoch, evaluate; or evaluate / analyse
    only. `stop` (engine.stopping.StopRequests): a Ctrl-C / SIGTERM lets the step under way finish, writes last.pt
    and stops; during a validation it stops at once, keeping the checkpoint written just before it."""
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
        print(f"evaluation results go to {run_dir}")
        (run_dir / "evaluation.yaml").write_text(config.to_yaml() + change_comments(list(changes), "evaluation"))
        metrics = final_evaluation(model, config, run_dir, device, autocast, baseline_direction, fold,
                                   weights=str(config.eval_weights), validation_set=validation_set,
                                   record=evaluation_record(config, list(changes)))
        if config.analysis != "none":
            from gaze360.analyses import run_analysis

            run_analysis(config.analysis, model, config, run_dir, device, autocast, fold)
        return metrics

    if state is None:  # a resumed run's weights come from its checkpoint
        if config.backbone_weights:
            load_backbone_weights(model, config.backbone_weights)
        if config.init_weights:
            load_weights(model, config.init_weights, config.init_weights_parts)
    sampler = EpochShuffleSampler(len(train_set), seed=config.seed)
    train_loader = make_gaze_loader(train_set, config, train=True, sampler=sampler)
    validation_loader = make_gaze_loader(validation_set, config, train=False)
    steps_per_epoch = len(train_loader)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[config.amp] is torch.float16)
    target_key = TARGET_KEYS[config.target]
    checkpointer = Checkpointer(config.table.prog, model=model, optimizer=optimizer, scaler=scaler)

    epoch, step, best, wandb_run_id = 0, 0, {"epoch": 0, "validation_deg": float("inf")}, None
    batch_in_epoch, unreadable, last_loss = 0, 0, float("nan")  # position in the epoch; its statistics so far
    checkpoint_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    history = resume_history(state, list(changes))
    if state is not None:
        model_state_from_checkpoint(state, model, str(checkpoint_path))  # refuses a file of an earlier network
        checkpointer.restore(state, checkpoint_path)
        epoch, step, best, wandb_run_id = state["epoch"], state["step"], state["best"], state.get("wandb_run_id")
        batch_in_epoch = state.get("batch_in_epoch", 0)  # > 0: written in the middle of an epoch by a stop
        unreadable, last_loss = state.get("epoch_unreadable", 0), state.get("last_loss", float("nan"))
        print(f"resuming {run_dir} at epoch {epoch}, step {step}" + (
            "" if not batch_in_epoch else " (its validation)" if batch_in_epoch >= steps_per_epoch else
            f" (batch {batch_in_epoch} of the epoch)"))
    # A checkpoint written before a validation repeats it: its records logged at that step are dropped.
    write_run_files(run_dir, config, state, history, redone=("validation",) if batch_in_epoch else ())
    logger = RunLogger(run_dir, config, model, wandb_run_id=wandb_run_id)

    def save(path: Path, batch_in_epoch: int) -> None:
        """Everything a resume needs; `epoch` epochs and `batch_in_epoch` batches of the next one are done (all of
        them: its validation is still to run)."""
        checkpointer.save(path, config, epoch=epoch, step=step, batch_in_epoch=batch_in_epoch, best=best,
                          wandb_run_id=logger.wandb_run_id, config_changes=history, epoch_unreadable=unreadable,
                          last_loss=last_loss)

    def stop_after(batch_in_epoch: int) -> None:
        """A signal came: checkpoint what is done, then stop (exit status 130 / 143)."""
        save(checkpoint_path, batch_in_epoch)
        logger.close()
        raise RunStopped(stop.signum, stopped_message(stop.signum, step, checkpoint_path))

    stop.deferring = True  # from here a signal lets the current step finish, then stops with a checkpoint
    while epoch < config.epochs:
        if config.early_stopping_patience and epoch - best["epoch"] >= config.early_stopping_patience:
            print(f"early stopping at epoch {epoch}: no better validation error for "
                  f"{config.early_stopping_patience} epochs (best: epoch {best['epoch']})")
            break
        set_backbone_trainable(model, epoch >= config.freeze_backbone_epochs)
        sampler.set_epoch(epoch, start=batch_in_epoch * config.batch_size)
        train_set.set_epoch(epoch)
        model.train()
        started, seen, trained = time.perf_counter(), 0, batch_in_epoch < steps_per_epoch
        for batch in tqdm(train_loader if trained else (), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False):
            batch_in_epoch += 1
            if batch is None or batch["unreadable"]:
                unreadable += config.batch_size if batch is None else batch["unreadable"]
            if batch is not None:
                with autocast():
                    prediction = model(batch["images"].to(device))
                loss = gaze_loss(prediction, batch[target_key].to(device), config)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss is {loss.item()} at step {step + 1}; the last good "
                                             f"checkpoint is kept")
                optimizer_step(loss, optimizer, scaler, config.grad_clip)
                step += 1
                seen += batch["images"].shape[0]
                last_loss = loss.item()
                if step % config.print_every == 0:
                    logger.log("train", step, epoch=epoch + 1, loss=last_loss, lr=optimizer.param_groups[0]["lr"],
                               samples_per_second=seen / max(time.perf_counter() - started, 1e-9))
            if stop.signum is not None:
                stop_after(batch_in_epoch)
        if stop.signum is not None:
            stop_after(batch_in_epoch)
        if trained:  # every batch of the epoch is done: a checkpoint first, so that a stop or a crash during the
            save(checkpoint_path, batch_in_epoch)  # validation repeats only the validation
        epoch += 1
        batch_in_epoch = 0
        if unreadable:
            print(f"epoch {epoch}: skipped {unreadable} training samples with unreadable frames (missing_frames: skip)")
        unreadable = 0
        stop.deferring = False  # a signal during the validation stops at once (the checkpoint above is kept)
        validation = evaluate_split(model, validation_set, validation_loader, config, device, autocast,
                                    baseline_direction)["model"]
        stop.deferring = True
        logger.log("validation", step, epoch=epoch, **{k: v for k, v in validation.items()})
        print(f"epoch {epoch}: loss {last_loss:.4f}  validation {validation['all_360_deg']:.2f} deg")
        if validation["all_360_deg"] < best["validation_deg"]:
            best = {"epoch": epoch, "validation_deg": validation["all_360_deg"]}
            save_checkpoint(best_path, checkpointer.state(config, parts=("model",), rng=False, epoch=epoch))
        save(checkpoint_path, 0)
        if not config.no_save and epoch % config.save_every == 0:
            save(run_dir / f"ckpt_epoch_{epoch}.pt", 0)
        if stop.signum is not None:
            logger.close()
            raise RunStopped(stop.signum, stopped_message(stop.signum, step, checkpoint_path))
    stop.deferring = False
    logger.close()
    if not best_path.is_file():
        raise RunFailed(f"{best_path} is missing: no epoch finished with a finite validation error")
    model.load_state_dict(load_checkpoint(best_path)["model"])
    print(f"best validation epoch {best['epoch']} ({best['validation_deg']:.2f} deg): evaluating {best_path}")
    return final_evaluation(model, config, run_dir, device, autocast, baseline_direction, fold,
                            weights=str(best_path), validation_set=validation_set, best=best)


def final_evaluation(model, config, run_dir: Path, device, autocast, baseline_direction, fold, weights: str,
                     validation_set, best: dict | None = None, record: dict | None = None) -> dict:
    """Test and validation errors of `model` with per-sample CSVs; writes and returns metrics.json (with `record`:
    what an evaluation says of the configuration it ran with)."""
    metrics = {"weights": weights, "best": best, **(record or {})}
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
    from engine.config import load_config
    from gaze360.options import GAZE360

    checkpoint = load_checkpoint(path)
    check_trainer(checkpoint, path, GAZE360.prog)
    stored = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    if stored is None or "model" not in checkpoint:
        raise ConfigError(f"{path}: not a checkpoint of the Gaze360 trainer (gaze360_main.py writes 'model' and "
                          "'config'); a bare state dict cannot say which Gaze360 network it holds")
    try:
        config = load_config((), stored_without_defaults(stored, GAZE360), GAZE360)
    except ConfigError as error:
        raise ConfigError(f"{path}: the Gaze360 configuration stored in it: {error}") from error
    model = build_model(config, len(crop_list(config)))
    state, _ = model_state_from_checkpoint(checkpoint, model, str(path))  # refuses a file of an earlier network
    model.load_state_dict(state)
    return model.to(device).eval(), config

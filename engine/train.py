"""The main job: build everything from the configuration, then one training loop a reader can follow top to bottom.

`run(config)` trains (resuming from `<output_dir>/<tag>/last.pt` unless `no_resume`), checkpoints atomically,
evaluates every `evaluate_every` epochs and at the end; with `eval_weights` it only evaluates. The run engine both
trainers share (engine.run) opens the run: a resume and an evaluation start from the configuration stored in the
checkpoint (engine.stored_config); one job at a time holds a run folder (engine.run_folder); Ctrl-C and SIGTERM stop
after the current step with a checkpoint (engine.stopping); engine.checkpoint.Checkpointer writes and restores it.
"""
from __future__ import annotations

import signal
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets import build_dataset, build_eval_dataset
from datasets.transforms import network_inputs
from datasets.validation import validate_datasets
from engine.build import build_formulation
from engine.checkpoint import CheckpointError, Checkpointer, save_checkpoint, seed_everything
from engine.config import ConfigError
from engine import distributed
from engine.data import EpochShuffleSampler, ShardSampler, diffusion_draws, make_loader
from engine.ema import ExponentialMovingAverage
from engine.logging import RunLogger
from engine.optimizer_step import optimizer_step
from engine.run import (
    Trainer, change_comments, evaluation_record, open_run, resume_history, write_run_files,
)
from engine.stopping import RunStopped, StopRequests, stopped_message
from engine.stored_config import EVALUATION_TIME, RESUMABLE, Change
from engine.losses import DenoisedRows, denoises_out_of_frame_rows, training_objective
from eval.evaluate import PROTOCOLS, evaluate, format_table
from formulations import TrainingTargets
from models.build import get_model
from models.feature_cache import FeatureCache
from optim import build_lr_scheduler, build_optimizer, learning_rates
from pretrained.loading import load_eval_weights, load_init_weights

AMP_DTYPES = {"off": None, "O0": None, "O1": torch.float16, "O2": torch.float16, "O3": torch.float16,
              "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The requested device (under torchrun, CUDA device `local_rank`), or an error saying why it cannot be used
    (never a silent fallback to CPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was requested but CUDA is not available here; pass --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was requested but MPS is not available here; pass --device cpu")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def autocast_for(config, device: torch.device):
    """The autocast context for the configured `amp` level, chosen once (a no-op context for fp32)."""
    dtype = AMP_DTYPES[config.amp or "off"]
    return nullcontext if dtype is None else partial(torch.autocast, device_type=device.type, dtype=dtype)


# What the run engine (engine.run) needs to know of this trainer: the options an evaluation or a resume may change,
# and those read only when a run starts.
TRAINER = Trainer(evaluation_time=EVALUATION_TIME, resumable=RESUMABLE,
                  start_only=("init_weights", "init_weights_scheme", "init_weights_rules", "backbone_pretrained",
                              "backbone_weights"))


def run(config) -> dict:
    """Train and evaluate (or only evaluate with `eval_weights`); returns the last evaluation summary.

    Under torchrun (WORLD_SIZE > 1) every process runs this with its own rank: DistributedDataParallel synchronises
    the gradients, each rank trains on its share of every epoch and evaluates its shard of the test set, and only
    rank 0 logs and writes files."""
    context = distributed.setup(config.device)
    share = partial(share_folder, context=context) if context.enabled else None
    with open_run(config, TRAINER, is_main=context.is_main, share_folder=share) as job:
        return _run(job.config, context, job.folder, job.state, job.changes, job.stop)


def share_folder(folder: Path, context: distributed.Distributed) -> Path:
    """The run folder rank 0 chose, on every rank (each rank writes into it)."""
    return Path(distributed.gather_objects([str(folder)] if context.is_main else [], context)[0])


def _run(config, context, run_dir: Path, state: dict | None, changes: list[Change], stop: StopRequests) -> dict:
    device = resolve_device(config.device, context.local_rank)
    seed_everything(config.seed)
    autocast = autocast_for(config, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    # Weights a checkpoint fills anyway need no starting weights (backbone_pretrained / backbone_weights).
    loads_checkpoint = bool(config.eval_weights) or state is not None
    model = get_model(config, init_backbone_weights=not loads_checkpoint).to(device, memory_format=memory_format)
    if config.sync_batchnorm and context.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # frozen streams stay in eval mode (model.train)
    if config.torch_compile:
        compile_model(model)
    test_set = build_eval_dataset(config)  # eval_dataset: cross-dataset
    train_set = None if config.eval_weights else build_dataset(config, "train")
    validate_datasets({"train": train_set, "test": test_set}, run_dir if context.is_main else None,  # before any step
                      config.output_dir, skip=config.skip_validation, progress=context.is_main)
    test_loader = make_loader(test_set, config, train=False, sampler=ShardSampler(len(test_set), context.rank,
                              context.world_size) if context.enabled else None)
    evaluation = partial(evaluate, run_dir=run_dir if context.is_main else None, autocast=autocast,
                         progress=context.is_main, gather=partial(distributed.gather_objects, context=context))

    if config.eval_weights:  # with ema_on, the file's averaged weights (pretrained.loading.load_eval_weights)
        report, kind = load_eval_weights(model, config)
        print(report.summary())
        if report.missing:
            raise CheckpointError(f"{config.eval_weights}: {len(report.missing)} model weights are missing, e.g. "
                                  f"{report.missing[:5]}; cannot evaluate a partly loaded model (weights of another "
                                  "architecture? give the configuration they were trained with)")
        if context.is_main:
            print(f"evaluation results go to {run_dir}")
            (run_dir / "evaluation.yaml").write_text(config.to_yaml() + change_comments(changes, "evaluation"))
        summary = evaluation(model, config, test_loader, device, weights=str(config.eval_weights),
                             evaluated_weights=kind, record=evaluation_record(config, changes))
        if context.is_main:
            print(format_table(summary))
        distributed.cleanup(context)
        return summary

    if config.init_weights and state is None:  # a resumed run's weights come from its checkpoint
        report = load_init_weights(model, config.init_weights, scheme=config.init_weights_scheme,
                                   extra_rules=config.init_weights_rules,
                                   trust_legacy=config.trust_legacy_checkpoint)
        print(report.summary())
    sampler = EpochShuffleSampler(len(train_set), seed=config.seed, rank=context.rank, world_size=context.world_size)
    train_loader = make_loader(train_set, config, train=True, sampler=sampler)
    unet_params, gaze_params = model.parameter_groups()
    optimizer = build_optimizer(unet_params, gaze_params, config)
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    if config.lr_schedule == "linear_anneal":  # guided-diffusion's decay ends the run at lr_anneal_steps
        total_steps = min(total_steps, config.lr_anneal_steps)
    scheduler = build_lr_scheduler(optimizer, config, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[config.amp or "off"] is torch.float16)
    formulation = build_formulation(config)  # what is diffused (or decoded): its losses and its sampling
    ema = ExponentialMovingAverage(model, config.ema_rate) if config.ema_on else None  # starts at the initial weights
    loss_fn = TrainingLoss(model, formulation=formulation, config=config, device=device, autocast=autocast,
                           memory_format=memory_format, context=context)
    if context.enabled:  # gradients of every parameter the loss reached are averaged over ranks during backward
        loss_fn = DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)  # e.g. a rank whose batch has no in-frame sample

    epoch, step, batch_in_epoch, wandb_run_id = 0, 0, 0, None
    checkpoint_path = run_dir / "last.pt"
    checkpointer = Checkpointer(config.table.prog, model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, ema=ema)
    history = resume_history(state, changes)
    if state is not None:
        if "ema" in checkpointer.restore(state, checkpoint_path, optional=("ema",)):
            ema = checkpointer.objects["ema"] = ExponentialMovingAverage(model, config.ema_rate)
            print(f"{checkpoint_path} holds no EMA weights (trained without ema_on): the EMA starts from its weights")
        epoch, step, wandb_run_id = state["epoch"], state["step"], state.get("wandb_run_id")
        batch_in_epoch = state.get("batch_in_epoch", 0)  # > 0: written in the middle of an epoch (save_every_steps)
        if batch_in_epoch and state.get("world_size", 1) != context.world_size:
            raise ConfigError(f"{checkpoint_path} was written in the middle of an epoch by {state.get('world_size', 1)} "
                              f"processes; resuming it with {context.world_size} would skip or repeat samples of "
                              "that epoch: resume with the same number of processes")
        print(f"resuming {run_dir} at epoch {epoch}, step {step}"
              + (f" (batch {batch_in_epoch} of the epoch)" if batch_in_epoch else ""))
    feature_cache = None
    if config.feature_cache:  # after every weight loading: the manifest fingerprints the encoder's final weights
        feature_cache = FeatureCache(config.feature_cache, model.gaze_backbone, config.source_dataset_dir,
                                     config.input_size, config.feature_cache_dtype)
        (loss_fn.module if context.enabled else loss_fn).options["feature_cache"] = feature_cache
    if context.is_main:
        write_run_files(run_dir, config, state, history)
    logger = RunLogger(run_dir, config, model, wandb_run_id=wandb_run_id, enabled=context.is_main)

    def training_state(epoch: int, batch_in_epoch: int) -> dict:
        """Everything a resume needs; `epoch` epochs and `batch_in_epoch` batches of the next one are done."""
        return checkpointer.state(config, epoch=epoch, step=step, batch_in_epoch=batch_in_epoch,
                                  wandb_run_id=logger.wandb_run_id, world_size=context.world_size,
                                  config_changes=history)

    running = RunningLosses()

    def save(path: Path, state: dict) -> None:
        running.check_finite(context)  # weights after a non-finite loss are never written
        # Every rank must hold the weights (and EMA) rank 0 saves.
        distributed.check_identical_on_ranks({**state["model"], **{f"ema.{k}": v for k, v in state.get("ema", {}).items()}},
                                             context)
        if context.is_main:
            save_checkpoint(path, state)

    summary = None
    finished = step >= total_steps
    stop.deferring = True  # from here a signal lets the current step finish, then stops with a checkpoint
    while not finished:
        sampler.set_epoch(epoch, start=batch_in_epoch * config.batch_size)
        train_set.set_epoch(epoch)
        model.train()
        started, seen = time.perf_counter(), 0
        stopping = None
        for batch in tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                          disable=not context.is_main):
            losses = training_step(model, formulation, batch, config, device, optimizer, scheduler, scaler, autocast,
                                   memory_format, step, ema, loss_fn=loss_fn, context=context)
            running.add(losses, step)  # device tensors: the host does not wait for the step to finish
            step += 1
            batch_in_epoch += 1
            seen += batch["image"].shape[0]
            if step % config.print_every == 0 or step == total_steps:
                means = running.means(context)  # the one host synchronisation between logging points
                elapsed = time.perf_counter() - started
                logger.log("train", step, epoch=epoch + 1, **means, **learning_rates(optimizer),
                           images_per_second=seen * context.world_size / max(elapsed, 1e-9), **memory_stats(device))
            if step >= total_steps:
                break
            if not context.enabled or step % config.print_every == 0:  # torchrun: ranks agree at logging points only
                stopping = stop_requested(stop, context, device)
            mid_epoch = batch_in_epoch < steps_per_epoch
            if mid_epoch and (stopping or config.save_every_steps and step % config.save_every_steps == 0):
                save(checkpoint_path, training_state(epoch, batch_in_epoch))
            if stopping and mid_epoch:
                logger.close()
                raise RunStopped(stopping, stopped_message(stopping, step, checkpoint_path))
        epoch += 1
        batch_in_epoch = 0
        finished = step >= total_steps
        state = training_state(epoch, 0)
        save(checkpoint_path, state)
        if not config.no_save and (epoch % config.save_every == 0 or finished):
            save(run_dir / f"ckpt_epoch_{epoch}.pt", state)
        stopping = stop_requested(stop, context, device)
        if stopping:  # the evaluation of this epoch is not run (a resumed finished run evaluates its weights)
            logger.close()
            raise RunStopped(stopping, stopped_message(stopping, step, checkpoint_path))
        if epoch % config.evaluate_every == 0 or finished:
            stop.deferring = False  # the epoch's checkpoint is written: a signal stops the evaluation at once
            summary = evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path)
            stop.deferring = True
            logger.log("eval", step, epoch=epoch, **{k: v for k, v in summary.items() if isinstance(v, (int, float))})
            if "figures" in summary:  # drawn with Debugging_maps, or whenever wandb is on
                logger.log_images("eval", step, summary["figures"]["folder"], summary["figures"]["files"])
            if context.is_main:
                print(f"epoch {epoch} ({summary['protocol']} protocol): " + "  ".join(
                    f"{key} {value:.4f}" for key, value in summary.items()
                    if key in PROTOCOLS[summary["protocol"]] and value is not None))
    stop.deferring = False
    if summary is None:  # resumed a run that had already finished: evaluate its final weights
        summary = evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path)
    logger.close()
    if context.is_main:
        print(format_table(summary))
    distributed.cleanup(context)
    return summary


def stop_requested(stop: StopRequests, context: distributed.Distributed, device: torch.device) -> int | None:
    """The signal that asks the job to stop, agreed by every rank (under torchrun the ranks may see it one step
    apart; they stop together after the same step), or None."""
    if not context.enabled:
        return stop.signum
    signum = distributed.all_reduce_sum(torch.tensor([float(stop.signum or 0)], device=device), context).item()
    return (stop.signum or signal.SIGTERM) if signum else None




def evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path) -> dict:
    """Evaluate the EMA weights when `ema_on` (metrics.json says "evaluated_weights": "ema"), else the model's."""
    with ema.swapped_in(model) if ema is not None else nullcontext():
        return evaluation(model, config, test_loader, device, weights=str(checkpoint_path),
                          evaluated_weights="model" if ema is None else "ema")


def compute_losses(model, batch, step: int, *, formulation, config, device, autocast, memory_format,
                   context: distributed.Distributed = distributed.Distributed(),
                   feature_cache: FeatureCache | None = None) -> dict[str, torch.Tensor]:
    """The losses of one batch, composed by engine.losses.training_objective: formulation.loss_weight
    (diffusion_weight, or direct_loss_weight) * (the formulation's loss of the in-frame samples of the global batch:
    all ranks together) + inout_weight * in/out BCE (with x_loss) + the weighted extra_loss term. Only in-frame
    samples have a target heatmap; the out-of-frame ones are denoised too when a term needs them (the original's
    terms, out_of_frame_diffusion_loss). The formulation's term is logged as its `loss_name`."""
    # Copies to the device are asynchronous (the loader pins its batches on CUDA); which samples are in frame is
    # read from the batch on the CPU, so no step waits for the device (BENCHMARKS.md, "training step").
    image, head_mask, face = network_inputs(batch, device, memory_format)  # uint8 samples become float here
    heatmap, inout = batch["heatmap"].to(device, non_blocking=True), batch["inout"].to(device, non_blocking=True)
    depth = (batch["depth"].to(device, memory_format=memory_format, non_blocking=True)  # depth_flag
             if "depth" in batch else None)
    in_frame = batch["inout"].cpu() > 0.5
    in_frame_rows = torch.nonzero(in_frame).flatten()
    denoised_rows = torch.arange(len(in_frame)) if denoises_out_of_frame_rows(config) else in_frame_rows
    rows = denoised_rows.to(device, non_blocking=True)
    global_in_frame = distributed.all_reduce_sum(torch.full((), float(len(in_frame_rows)), device=device), context)
    denoised = None
    with autocast():
        scene_tokens = None if feature_cache is None else \
            feature_cache.scene_tokens(model.gaze_backbone, image, batch["path"], batch["flip"])
        features = model.encode(image, head_mask, face, depth, scene_tokens=scene_tokens)
        inout_logit = model.predict_inout_logit(features)
        if len(denoised_rows):
            gaze_point = batch["gaze_points"][:, 0].to(device, non_blocking=True)
            # Per-sample draws from (seed, step, dataset index): exact on resume and under DDP.
            draw = partial(diffusion_draws, batch["index"].cpu()[denoised_rows], step, config.seed)
            terms = formulation.training_losses(model, features, TrainingTargets(heatmap, gaze_point, rows, draw))
            denoised = DenoisedRows(
                loss=terms["loss"], pred_x0=terms["pred_xstart"][:, 0],
                pred_heatmap=formulation.unit_heatmap(terms["pred_xstart"])[:, 0],
                model_output=terms["model_output"][:, 0] if "model_output" in terms else None,
                in_frame=in_frame[denoised_rows], target=heatmap[rows], gaze_point=gaze_point[rows],
                output_scale=formulation.original_output_scale)
    losses = training_objective(denoised, inout_logit, inout, config, in_frame_total=global_in_frame,
                                world_size=context.world_size, loss_weight=formulation.loss_weight,
                                loss_name=formulation.loss_name)
    return {**losses, "in_frame": torch.tensor(float(len(in_frame_rows)))}


class TrainingLoss(nn.Module):
    """`compute_losses` as a module whose forward is the whole loss, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, **options):
        super().__init__()
        self.model, self.options = model, options

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        return compute_losses(self.model, batch, step, **self.options)


def training_step(model, formulation, batch, config, device, optimizer, scheduler, scaler, autocast, memory_format,
                  step: int, ema: ExponentialMovingAverage | None = None, loss_fn=None,
                  context: distributed.Distributed = distributed.Distributed()) -> dict[str, torch.Tensor]:
    """One optimisation step (and EMA update); `loss_fn` is the (DDP-wrapped) TrainingLoss under torchrun.

    Returns the step's statistics as detached tensors (on the device, except the in-frame count) without waiting for
    the device: the training loop sums them in a RunningLosses, which checks that the loss stayed finite and reads
    them at logging points. Only fp16's GradScaler reads a value on the host each step (it must decide whether to
    skip the step); bf16 and fp32 steps never do."""
    if loss_fn is None:
        loss_fn = TrainingLoss(model, formulation=formulation, config=config, device=device, autocast=autocast,
                               memory_format=memory_format, context=context)
    terms = loss_fn(batch, step)
    stepped = optimizer_step(terms["loss"], optimizer, scaler, config.grad_clip)
    distributed.broadcast_buffers(model, context)
    if stepped:  # a step skipped for inf/NaN fp16 gradients lowers the scale and holds the schedule and the EMA
        scheduler.step()
        if ema is not None:
            ema.update(model)
    return {key: value.detach() for key, value in terms.items() if key != "loss_extra" or config.extra_loss != "none"}


class RunningLosses:
    """The training statistics summed on the device between logging points, and the first step whose loss was not
    finite, so that the training loop never waits for the device between logging points.

    `check_finite` (at every logging point and before every checkpoint is written) stops the run naming that step;
    the weights of the steps after it are never saved, so the last checkpoint on disk is the last good one."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0
        self.last_step = 0
        self.first_bad_step: torch.Tensor | None = None  # 1-based step number, 0 while every loss was finite
        self.bad_loss: torch.Tensor | None = None

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Add the statistics of 0-based optimisation step `step` (device tensor operations only)."""
        for key, value in losses.items():
            self.sums[key] = self.sums[key] + value.float() if key in self.sums else value.float().clone()
        loss = losses["loss"].float()
        if self.first_bad_step is None:
            self.first_bad_step = torch.zeros((), dtype=torch.long, device=loss.device)
            self.bad_loss = torch.zeros((), device=loss.device)
        new_bad = (self.first_bad_step == 0) & ~torch.isfinite(loss)
        self.first_bad_step = torch.where(new_bad, step + 1, self.first_bad_step)
        self.bad_loss = torch.where(new_bad, loss, self.bad_loss)
        self.steps += 1
        self.last_step = step + 1

    def check_finite(self, context: distributed.Distributed = distributed.Distributed()) -> None:
        """Raise FloatingPointError (on every rank) if a loss since the start was NaN or infinite, naming its step."""
        if self.first_bad_step is None:
            return
        any_rank = distributed.all_reduce_sum((self.first_bad_step > 0).float(), context)
        if float(any_rank) > 0:
            first = int(self.first_bad_step)
            what = f"the loss is {float(self.bad_loss)} at step {first}" if first else "another rank's loss is not finite"
            raise FloatingPointError(f"training stopped: {what} (found at step {self.last_step}); the weights of the "
                                     "steps since are not saved and the last good checkpoint is kept")

    def means(self, context: distributed.Distributed = distributed.Distributed()) -> dict[str, float]:
        """Check the losses were finite, then return the means over the steps since the last call (averaged over
        ranks; the in-frame count per step summed over ranks) and start again."""
        self.check_finite(context)
        values = {key: float(value) / self.steps for key, value in self.sums.items()}
        self.sums, self.steps = {}, 0
        return distributed.reduce_means(values, context, summed=("in_frame",))


def compile_model(model, **compile_options) -> None:
    """torch.compile the heatmap network (the UNet) and the gaze backbone in place (nn.Module.compile), so parameter
    names, the optimizer and checkpoints stay as they are. The in/out head is a few small layers and is left alone."""
    model.heatmap_network.compile(**compile_options)
    model.gaze_backbone.compile(**compile_options)


def memory_stats(device: torch.device) -> dict[str, float | None]:
    """Peak GPU memory allocated so far (GiB); null on a CPU run, so every JSONL record has the same fields."""
    if device.type != "cuda":
        return {"gpu_memory_gb": None}
    return {"gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30}

"""The main job: build everything from the configuration, then one training loop a reader can follow top to bottom.

`run(config)` trains (resuming from `<output_dir>/<tag>/last.pt` unless `no_resume`), checkpoints atomically,
evaluates every `evaluate_every` epochs and at the end; with `eval_weights` it only evaluates.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets import build_dataset, build_eval_dataset
from datasets.validation import validate_datasets
from engine.build import build_training_diffusion, denoiser, heatmap_scaling, point_target
from engine.checkpoint import CHECKPOINT_FORMAT, resume_state, rng_state, save_checkpoint, seed_everything, set_rng_state
from engine import distributed
from engine.data import EpochShuffleSampler, ShardSampler, diffusion_draws, make_loader
from engine.ema import ExponentialMovingAverage
from engine.logging import RunLogger
from engine.optimizer_step import optimizer_step
from engine.losses import extra_heatmap_loss
from eval.evaluate import PROTOCOLS, evaluate, format_table
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer, learning_rates
from pretrained.loading import load_eval_weights, load_init_weights

AMP_DTYPES = {"off": None, "O0": None, "O1": torch.float16, "O2": torch.float16, "O3": torch.float16,
              "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The requested device (under torchrun, CUDA device `local_rank`), or an error saying why it cannot be used
    (never a silent fallback to CPU)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but CUDA is not available here; pass --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was requested but MPS is not available here; pass --device cpu")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def autocast_for(config, device: torch.device):
    """The autocast context for the configured `amp` level, chosen once (a no-op context for fp32)."""
    dtype = AMP_DTYPES[config.amp or "off"]
    return nullcontext if dtype is None else partial(torch.autocast, device_type=device.type, dtype=dtype)


def run(config) -> dict:
    """Train and evaluate (or only evaluate with `eval_weights`); returns the last evaluation summary.

    Under torchrun (WORLD_SIZE > 1) every process runs this with its own rank: DistributedDataParallel synchronises
    the gradients, each rank trains on its share of every epoch and evaluates its shard of the test set, and only
    rank 0 logs and writes files."""
    context = distributed.setup(config.device)
    run_dir = Path(config.output_dir) / config.tag
    device = resolve_device(config.device, context.local_rank)
    seed_everything(config.seed)
    autocast = autocast_for(config, device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = get_model(config).to(device, memory_format=memory_format)
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
            raise RuntimeError(f"{config.eval_weights}: {len(report.missing)} model weights are missing, e.g. "
                               f"{report.missing[:5]}; cannot evaluate a partly loaded model")
        summary = evaluation(model, config, test_loader, device, weights=str(config.eval_weights),
                             evaluated_weights=kind)
        if context.is_main:
            print(format_table(summary))
        distributed.cleanup(context)
        return summary

    if config.init_weights:
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
    if config.lr_anneal_steps:
        total_steps = min(total_steps, config.lr_anneal_steps)
    scheduler = build_lr_scheduler(optimizer, config, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=AMP_DTYPES[config.amp or "off"] is torch.float16)
    diffusion = build_training_diffusion(config)
    scaling = heatmap_scaling(config)
    denoise = denoiser(model, config)
    ema = ExponentialMovingAverage(model, config.ema_rate) if config.ema_on else None  # starts at the initial weights
    loss_fn = TrainingLoss(model, denoise=denoise, diffusion=diffusion, scaling=scaling, config=config, device=device,
                           autocast=autocast, memory_format=memory_format, context=context)
    if context.enabled:  # gradients of every parameter the loss reached are averaged over ranks during backward
        loss_fn = DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)  # e.g. a rank whose batch has no in-frame sample

    epoch, step, batch_in_epoch, wandb_run_id = 0, 0, 0, None
    checkpoint_path = run_dir / "last.pt"
    state = resume_state(checkpoint_path, config)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        elif ema is not None:
            ema = ExponentialMovingAverage(model, config.ema_rate)
            print(f"{checkpoint_path} holds no EMA weights (trained without ema_on): the EMA starts from its weights")
        set_rng_state(state["rng"])
        epoch, step, wandb_run_id = state["epoch"], state["step"], state.get("wandb_run_id")
        batch_in_epoch = state.get("batch_in_epoch", 0)  # > 0: written in the middle of an epoch (save_every_steps)
        if batch_in_epoch and state.get("world_size", 1) != context.world_size:
            raise RuntimeError(f"{checkpoint_path} was written in the middle of an epoch by {state.get('world_size', 1)} "
                               f"processes; resuming it with {context.world_size} would skip or repeat samples of "
                               "that epoch: resume with the same number of processes")
        print(f"resuming {run_dir} at epoch {epoch}, step {step}"
              + (f" (batch {batch_in_epoch} of the epoch)" if batch_in_epoch else ""))
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config.to_yaml())
    logger = RunLogger(run_dir, config, model, wandb_run_id=wandb_run_id, enabled=context.is_main)

    def training_state(epoch: int, batch_in_epoch: int) -> dict:
        """Everything a resume needs; `epoch` epochs and `batch_in_epoch` batches of the next one are done."""
        state = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step,
                 "batch_in_epoch": batch_in_epoch, "rng": rng_state(), "config": config.to_dict(),
                 "wandb_run_id": logger.wandb_run_id, "world_size": context.world_size}
        if ema is not None:
            state["ema"] = ema.state_dict()
        return state

    def save(path: Path, state: dict) -> None:
        # Every rank must hold the weights (and EMA) rank 0 saves.
        distributed.check_identical_on_ranks({**state["model"], **{f"ema.{k}": v for k, v in state.get("ema", {}).items()}},
                                             context)
        if context.is_main:
            save_checkpoint(path, state)

    summary = None
    finished = step >= total_steps
    while not finished:
        sampler.set_epoch(epoch, start=batch_in_epoch * config.batch_size)
        train_set.set_epoch(epoch)
        model.train()
        started, seen = time.perf_counter(), 0
        for batch in tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                          disable=not context.is_main):
            losses = training_step(model, denoise, diffusion, scaling, batch, config, device, optimizer, scheduler,
                                   scaler, autocast, memory_format, step, ema, loss_fn=loss_fn, context=context)
            step += 1
            batch_in_epoch += 1
            seen += batch["image"].shape[0]
            if step % config.print_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - started
                logger.log("train", step, epoch=epoch + 1, **losses, **learning_rates(optimizer),
                           images_per_second=seen * context.world_size / max(elapsed, 1e-9), **memory_stats(device))
            if step >= total_steps:
                break
            if config.save_every_steps and step % config.save_every_steps == 0 and batch_in_epoch < steps_per_epoch:
                save(checkpoint_path, training_state(epoch, batch_in_epoch))
        epoch += 1
        batch_in_epoch = 0
        finished = step >= total_steps
        state = training_state(epoch, 0)
        save(checkpoint_path, state)
        if not config.no_save and (epoch % config.save_every == 0 or finished):
            save(run_dir / f"ckpt_epoch_{epoch}.pt", state)
        if epoch % config.evaluate_every == 0 or finished:
            summary = evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path)
            logger.log("eval", step, epoch=epoch, **{k: v for k, v in summary.items() if isinstance(v, (int, float))})
            if "figures" in summary:  # drawn with Debugging_maps, or whenever wandb is on
                logger.log_images("eval", step, summary["figures"]["folder"], summary["figures"]["files"])
            if context.is_main:
                print(f"epoch {epoch} ({summary['protocol']} protocol): " + "  ".join(
                    f"{key} {value:.4f}" for key, value in summary.items()
                    if key in PROTOCOLS[summary["protocol"]] and value is not None))
    if summary is None:  # resumed a run that had already finished: evaluate its final weights
        summary = evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path)
    logger.close()
    if context.is_main:
        print(format_table(summary))
    distributed.cleanup(context)
    return summary


def evaluate_trained(evaluation, model, ema, config, test_loader, device, checkpoint_path) -> dict:
    """Evaluate the EMA weights when `ema_on` (metrics.json says "evaluated_weights": "ema"), else the model's."""
    with ema.swapped_in(model) if ema is not None else nullcontext():
        return evaluation(model, config, test_loader, device, weights=str(checkpoint_path),
                          evaluated_weights="model" if ema is None else "ema")


def compute_losses(model, batch, step: int, *, denoise, diffusion, scaling, config, device, autocast, memory_format,
                   context: distributed.Distributed = distributed.Distributed()) -> dict[str, torch.Tensor]:
    """The losses of one batch. Loss = diffusion_weight * (diffusion loss averaged over the in-frame samples of the
    global batch: all ranks together) + inout_weight * in/out BCE (with x_loss). Out-of-frame samples have no target
    heatmap to denoise. Each rank's diffusion term is normalised by the global in-frame count times the world size,
    so that DDP's gradient average equals the gradient of the single-process loss over the same samples."""
    image, head_mask, face = (batch[key].to(device, memory_format=memory_format) for key in ("image", "head_mask", "face"))
    heatmap, inout = batch["heatmap"].to(device), batch["inout"].to(device)
    depth = batch["depth"].to(device, memory_format=memory_format) if "depth" in batch else None  # depth_flag
    in_frame = inout > 0.5
    global_in_frame = distributed.all_reduce_sum(in_frame.sum(), context)
    with autocast():
        features = model.encode(image, head_mask, face, depth)
        inout_logit = model.inout_logit(features["scene_face_feat"])
        diffusion_loss = extra_loss = torch.zeros((), device=device)
        if in_frame.any():
            kwargs = {name: value[in_frame] for name, value in model.denoiser_kwargs(features).items()}
            if config.diffusion_target != "heatmap":  # the point is diffused; the UNet predicts the [0, 1] heatmap
                x_start = heatmap[in_frame].unsqueeze(1)
                # One draw per sample: the point's noise, then (point_image) the rendered heatmap's.
                t, noise = diffusion_draws(batch["index"][in_frame.cpu()], step, config.seed,
                                           diffusion.num_timesteps, (2 + x_start[0].numel(),))
                noise = noise.to(device)
                terms = diffusion.training_losses_point(
                    denoise, x_start, batch["gaze_points"][:, 0].to(device)[in_frame].to(x_start.dtype),
                    t.to(device), point_target(config), model_kwargs=kwargs, noise=noise[:, :2],
                    heatmap_noise=noise[:, 2:].reshape(x_start.shape))
            else:
                x_start = scaling.to_diffusion(heatmap[in_frame].unsqueeze(1))
                t, noise = diffusion_draws(batch["index"][in_frame.cpu()], step, config.seed,
                                           diffusion.num_timesteps, tuple(x_start.shape[1:]),
                                           diffusion.offset_noise_strength)
                terms = diffusion.training_losses(denoise, x_start, t.to(device), model_kwargs=kwargs,
                                                  noise=noise.to(device))
            diffusion_loss = terms["loss"].float().sum() * (context.world_size / global_in_frame)
            if config.other_loss:
                extra_loss = extra_heatmap_loss(terms["pred_xstart"][:, 0], x_start[:, 0],
                                                batch["gaze_points"][:, 0].to(device)[in_frame], config)
    inout_loss = F.binary_cross_entropy_with_logits(inout_logit.float(), inout)
    loss = config.diffusion_weight * diffusion_loss
    if config.x_loss:
        loss = loss + config.inout_weight * inout_loss
    if config.other_loss:
        loss = loss + extra_loss
    return {"loss": loss, "loss_diffusion": diffusion_loss, "loss_inout": inout_loss, "loss_extra": extra_loss,
            "in_frame": in_frame.sum()}


class TrainingLoss(nn.Module):
    """`compute_losses` as a module whose forward is the whole loss, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, **options):
        super().__init__()
        self.model, self.options = model, options

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        return compute_losses(self.model, batch, step, **self.options)


def training_step(model, denoise, diffusion, scaling, batch, config, device, optimizer, scheduler, scaler,
                  autocast, memory_format, step: int, ema: ExponentialMovingAverage | None = None, loss_fn=None,
                  context: distributed.Distributed = distributed.Distributed()) -> dict[str, float]:
    """One optimisation step (and EMA update); `loss_fn` is the (DDP-wrapped) TrainingLoss under torchrun.
    Returns the logged statistics, averaged over ranks."""
    if loss_fn is None:
        loss_fn = TrainingLoss(model, denoise=denoise, diffusion=diffusion, scaling=scaling, config=config,
                               device=device, autocast=autocast, memory_format=memory_format, context=context)
    terms = loss_fn(batch, step)
    loss = terms["loss"]
    if distributed.all_reduce_sum((~torch.isfinite(loss.detach())).float(), context) > 0:  # every rank stops
        raise FloatingPointError(f"training stopped: the loss is {loss.item()} at step {step + 1}; nothing of this "
                                 "step was applied and the last good checkpoint is kept")
    stepped = optimizer_step(loss, optimizer, scaler, config.grad_clip)
    distributed.broadcast_buffers(model, context)
    if stepped:  # a step skipped for inf/NaN fp16 gradients lowers the scale and holds the schedule and the EMA
        scheduler.step()
        if ema is not None:
            ema.update(model)
    losses = {key: float(value.detach()) for key, value in terms.items() if key != "loss_extra" or config.other_loss}
    return distributed.reduce_means(losses, context, summed=("in_frame",))


def compile_model(model, **compile_options) -> None:
    """torch.compile the UNet and the gaze backbone in place (nn.Module.compile), so parameter names, the optimizer
    and checkpoints stay as they are. The in/out head is a few small layers and is left alone."""
    model.unet.compile(**compile_options)
    model.gaze_backbone.compile(**compile_options)


def memory_stats(device: torch.device) -> dict[str, float | None]:
    """Peak GPU memory allocated so far (GiB); null on a CPU run, so every JSONL record has the same fields."""
    if device.type != "cuda":
        return {"gpu_memory_gb": None}
    return {"gpu_memory_gb": torch.cuda.max_memory_allocated(device) / 2**30}

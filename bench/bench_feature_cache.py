"""Training epoch time with a frozen timm encoder: tokens read from the feature cache against the encoder run every
step, side by side (interleaved) on the DINOv2 demo configuration (configs/dinov2/demo/) and the synthetic dataset.

    python -m bench.bench_feature_cache [--timm_model NAME] [--input_size S] [--max_steps N] [--epochs E]

The cache is filled by a first epoch that is not timed; then epochs with and without the cache alternate. The losses
of both are checked equal (the cache's contract), so the ratio compares the same computation.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from datasets import build_dataset
from engine.build import build_formulation
from engine.config import load_config
from engine.data import EpochShuffleSampler, make_loader
from engine.train import TrainingLoss, autocast_for, training_step
from models.build import count_parameters, get_model
from models.feature_cache import FeatureCache
from optim import build_lr_scheduler, build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timm_model", default=None, help="default: the demo's vit_small_patch14_reg4_dinov2")
    parser.add_argument("--input_size", type=int, default=None, help="default: the demo's 56")
    parser.add_argument("--max_steps", type=int, default=4, help="optimisation steps per timed epoch")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the demo's 32")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs of each kind")
    args = parser.parse_args()
    overrides = {"num_workers": 0, "device": "cpu"}
    overrides.update({k: v for k, v in (("timm_model", args.timm_model), ("input_size", args.input_size),
                                        ("batch_size", args.batch_size)) if v})
    with tempfile.TemporaryDirectory() as folder:
        overrides["feature_cache"] = folder
        config = load_config(["configs/dinov2/demo/diffusion.yaml", "configs/dinov2/demo/gaze.yaml"], overrides)
        torch.manual_seed(config.seed)
        device, autocast = torch.device("cpu"), autocast_for(config, torch.device("cpu"))
        model = get_model(config).train()
        train_set = build_dataset(config, "train")
        sampler = EpochShuffleSampler(len(train_set), seed=config.seed)
        loader = make_loader(train_set, config, train=True, sampler=sampler)
        unet, rest = model.parameter_groups()
        scaler = torch.amp.GradScaler("cpu", enabled=False)
        formulation = build_formulation(config)
        cache = FeatureCache(folder, model.gaze_backbone, config.source_dataset_dir, config.input_size,
                             config.feature_cache_dtype)
        options = dict(formulation=formulation, config=config, device=device, autocast=autocast,
                       memory_format=torch.contiguous_format)
        loss_fns = {"encoder": TrainingLoss(model, **options),
                    "cache": TrainingLoss(model, **options, feature_cache=cache)}
        initial = {k: v.clone() for k, v in model.state_dict().items()}

        def epoch(kind: str, epoch_index: int) -> tuple[float, list[float]]:
            model.load_state_dict(initial)  # the same weights and optimiser state for both kinds
            optimizer = build_optimizer(unet, rest, config)
            scheduler = build_lr_scheduler(optimizer, config, 10_000)
            sampler.set_epoch(epoch_index)
            seconds, losses = 0.0, []
            for step, batch in enumerate(loader):
                if step == args.max_steps:
                    break
                started = time.perf_counter()  # data loading is the same for both kinds: not timed
                stats = training_step(model, formulation, batch, config, device, optimizer, scheduler,
                                      scaler, autocast, torch.contiguous_format, step, loss_fn=loss_fns[kind])
                seconds += time.perf_counter() - started
                losses.append(stats["loss"])
            return seconds, losses

        for index in range(args.epochs):  # fill the cache with every (image, flip) the timed epochs will see
            epoch("cache", index)
        totals = {"encoder": 0.0, "cache": 0.0}
        for index in range(args.epochs):
            for kind in ("encoder", "cache"):
                seconds, losses = epoch(kind, index)
                totals[kind] += seconds
                print(f"epoch {index} with the {kind}: {seconds:.1f} s", flush=True)
                if kind == "encoder":
                    reference = losses
            assert losses == reference, (losses, reference)
        encoder = model.gaze_backbone.scene_backbone
        print(f"{config.timm_model} at {config.input_size} px ({encoder.side}x{encoder.side} tokens, "
              f"{count_parameters(encoder) / 1e6:.1f} M frozen parameters), trainable "
              f"{sum(p.numel() for p in unet + rest) / 1e6:.2f} M, batch {config.batch_size}, {args.epochs} x "
              f"{min(args.max_steps, len(loader))} steps each: encoder {totals['encoder']:.1f} s, cache "
              f"{totals['cache']:.1f} s, ratio {totals['encoder'] / totals['cache']:.2f}x (cache hits {cache.hits}, "
              f"misses {cache.misses}); same losses")


if __name__ == "__main__":
    main()

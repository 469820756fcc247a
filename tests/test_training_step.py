"""One optimisation step and one prediction through the engine for every diffusion formulation the configuration
offers, and the options that act inside the step (x_loss, weights, freezing, norm_std_flag, amp, channels_last)."""
import pytest
import torch

from engine.build import build_formulation, denoiser
from engine.config import load_config
from engine.train import AMP_DTYPES, autocast_for, training_step
from eval.evaluate import predict_heatmaps
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dict(device="cpu", no_wandb=True, input_size=64, output_size=16, batch_size=4, train_time_steps=20,
            sample_time_steps=4, list_resnet_scene_layers=[1, 1, 1, 1, 1], list_resnet_face_layers=[1, 1, 1, 1, 1],
            resnet_scene_inplanes=8, resnet_face_inplanes=8, unet_context_vector=128, unet_inplanes=8,
            list_unet_inplanes_multipliers=[1, 2], list_unet_attention_levels=[2], unet_spatial_tf_heads=2)

FORMULATIONS = {
    "adm_x0": {},
    "adm_eps": {"adm_predict_xstart": False},
    "adm_v": {"adm_predict_xstart": False, "adm_predict_v": True},
    "adm_hybrid": {"adm_learn_sigma": True, "adm_rescale_learned_sigmas": True, "adm_predict_xstart": False},
    "adm_kl": {"adm_learn_sigma": True, "adm_use_kl": True, "adm_predict_xstart": False},
    "adm_rescaled_t": {"adm_rescale_timesteps": True, "schedule_type": "cosine"},
    "simple_noise": {"adm": False, "adm_predict_xstart": False, "predict_sthg": "pred_noise"},
    "simple_x0": {"adm": False, "adm_predict_xstart": False, "predict_sthg": "pred_x0"},
    "adm_x0_concat_scene": {"concat_scene": True},
}


def batch(size=4, side=64, out=16, in_frame=(1, 1, 0, 1)):
    torch.manual_seed(0)
    head_mask = torch.zeros(size, 1, side, side)
    head_mask[:, :, 4:16, 8:20] = 1
    heatmap = torch.zeros(size, out, out)
    heatmap[:, 5:8, 9:12] = 1.0
    inout = torch.tensor(in_frame, dtype=torch.float32)
    return {"image": torch.randn(size, 3, side, side), "head_mask": head_mask, "face": torch.randn(size, 3, side, side),
            "heatmap": heatmap * inout[:, None, None], "inout": inout, "index": torch.arange(size),
            "gaze_points": torch.tensor([[10.5 / out, 6.5 / out]]).repeat(size, 1)[:, None, :]}


def one_step(config, data=None):
    torch.manual_seed(1)
    device = torch.device("cpu")
    model = get_model(config)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=AMP_DTYPES[config.amp] is torch.float16)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = training_step(model, build_formulation(config), data or batch(), config, device, optimizer, scheduler,
                           scaler, autocast_for(config, device), memory_format, step=0)
    losses = {key: float(value) for key, value in losses.items()}  # detached tensors, read here as a logger would
    changed = {name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())}
    return model, losses, changed


@pytest.mark.parametrize("name", sorted(FORMULATIONS))
def test_every_formulation_trains_and_samples(name):
    config = load_config([], {**TINY, **FORMULATIONS[name]})
    model, losses, changed = one_step(config)
    assert torch.isfinite(torch.tensor(losses["loss"])) and losses["in_frame"] == 3
    assert any(n.startswith("unet.") for n in changed) and any(n.startswith("gaze_backbone.") for n in changed)
    heatmaps, inout = predict_heatmaps(model, build_formulation(config), config, batch(), torch.device("cpu"))
    assert heatmaps.shape == (4, 16, 16) and inout.shape == (4,)
    assert ((inout > 0) & (inout < 1)).all()


def test_loss_is_the_weighted_sum_and_x_loss_switches_the_inout_term():
    config = load_config([], {**TINY, "diffusion_weight": 2.0, "inout_weight": 3.0})
    _, losses, changed = one_step(config)
    assert losses["loss"] == pytest.approx(2.0 * losses["loss_diffusion"] + 3.0 * losses["loss_inout"], rel=1e-5)
    assert any(n.startswith("inout_head.") for n in changed)
    config = load_config([], {**TINY, "x_loss": False})
    _, losses, changed = one_step(config)
    assert losses["loss"] == pytest.approx(config.diffusion_weight * losses["loss_diffusion"], rel=1e-5)
    assert not any(n.startswith("inout_head.") for n in changed)


@pytest.mark.parametrize("extra", ["location", "cross_entropy", "kl", "location_original", "kl_original"])
def test_extra_loss_adds_the_weighted_extra_heatmap_term(extra):
    config = load_config([], {**TINY, "extra_loss": extra, "location_weight": 2.0, "kl_weight": 5.0})
    _, losses, changed = one_step(config)
    assert losses["loss_extra"] > 0 and any(n.startswith("unet.") for n in changed)
    expected = config.diffusion_weight * losses["loss_diffusion"] + config.inout_weight * losses["loss_inout"]
    assert losses["loss"] == pytest.approx(expected + losses["loss_extra"], rel=1e-5)


def test_diffusion_loss_ignores_out_of_frame_samples():
    config = load_config([], TINY)
    data = batch(in_frame=(0, 0, 0, 0))
    _, losses, changed = one_step(config, data)
    assert losses["loss_diffusion"] == 0.0 and losses["in_frame"] == 0
    assert not any(n.startswith("unet.") for n in changed)


def test_frozen_streams_keep_weights_and_batchnorm_statistics():
    config = load_config([], {**TINY, "freeze_scene": True})
    model, _, changed = one_step(config)
    assert not any(n.startswith("gaze_backbone.scene_backbone.") for n in changed)
    assert any(n.startswith("gaze_backbone.face_backbone.") for n in changed)
    fresh = get_model(config)
    assert torch.equal(model.gaze_backbone.scene_backbone.bn1.running_mean,
                       fresh.gaze_backbone.scene_backbone.bn1.running_mean)


def test_norm_std_flag_rescales_only_the_network_input():
    config = load_config([], {**TINY, "norm_std_flag": True})
    seen = []
    model = get_model(config)
    model.unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0]), with_kwargs=True)
    x_t = 5.0 * torch.randn(2, 1, 16, 16)
    context = torch.randn(2, 32, 128)
    denoiser(model, config)(x_t, torch.tensor([3, 7]), context=context)
    assert torch.allclose(seen[0].flatten(1).std(dim=1), torch.ones(2), atol=1e-5)
    assert denoiser(model, config.replace(norm_std_flag=False)) is model.unet


@pytest.mark.parametrize("amp, channels_last", [("bf16", False), ("off", True)])
def test_bf16_autocast_and_channels_last_steps_train(amp, channels_last):
    config = load_config([], {**TINY, "amp": amp, "channels_last": channels_last})
    _, losses, changed = one_step(config)
    assert torch.isfinite(torch.tensor(losses["loss"])) and changed


def test_fp16_grad_scaler_skips_overflowing_steps_then_trains():
    # With diffusion_weight 1e5 the scaled fp16 gradients overflow at GradScaler's initial scale 2^16: those steps are
    # skipped (weights unchanged) and the scale halves until the gradients fit, then the weights move.
    config = load_config([], {**TINY, "amp": "O1"})
    device = torch.device("cpu")
    model = get_model(config)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 100)
    scaler = torch.amp.GradScaler("cpu")
    before = [p.detach().clone() for p in model.unet.parameters()]
    scales = [scaler.get_scale()]
    for step in range(60):
        training_step(model, build_formulation(config), batch(), config, device, optimizer, scheduler, scaler,
                      autocast_for(config, device), torch.contiguous_format, step)
        scales.append(scaler.get_scale())
        if any(not torch.equal(b, p.detach()) for b, p in zip(before, model.unet.parameters())):
            break
    else:
        pytest.fail(f"fp16 training never stepped; scales {scales}")
    assert scales[1] == scales[0] / 2 and scales[-1] < scales[0]
    assert scheduler.last_epoch == 1  # the schedule advances with optimizer steps, not with skipped ones


def test_concat_scene_gives_the_unet_the_resized_scene_and_head_mask():
    config = load_config([], {**TINY, "concat_scene": True})
    model = get_model(config)
    data = batch()
    features = model.encode(data["image"], data["head_mask"], data["face"])
    spatial = model.denoiser_kwargs(features)["spatial"]
    assert spatial.shape == (4, 4, 16, 16)
    # Area resize of the 64 x 64 head mask (ones on rows 4:16, columns 8:20) to 16 x 16: cells of 4 x 4 pixels.
    assert spatial[0, 3, 1:4, 2:5].eq(1).all() and spatial[0, 3, 0].eq(0).all() and spatial[0, 3, 1, 5] == 0
    assert torch.allclose(spatial[:, :3], torch.nn.functional.avg_pool2d(data["image"], 4), atol=1e-6)
    with pytest.raises(ValueError, match="takes 4 spatial condition channels; got none"):
        model.unet(torch.randn(4, 1, 16, 16), torch.zeros(4), context=features["conditioning"])
    assert model.unet.input_blocks[0][0].in_channels == 1 + 4


def loader_batch(size=4, side=64, out=16):
    """`batch` as the datasets' loaders deliver it: uint8 pixels and head masks, and each sample's colour jitter."""
    from datasets.transforms import ColourJitter, colour_coefficients
    data = batch(size, side, out)
    generator = torch.Generator().manual_seed(2)
    pixels = {key: torch.randint(0, 256, (size, 3, side, side), generator=generator, dtype=torch.uint8)
              for key in ("image", "face")}
    jitter = ColourJitter(1.1, 0.9, 1.2, 0.02)
    colour = torch.stack([colour_coefficients(None if i % 2 else jitter) for i in range(size)])
    return {**data, **pixels, "head_mask": data["head_mask"].to(torch.uint8), "colour": colour}


@pytest.mark.parametrize("samples", ["float", "uint8"])
def test_training_steps_between_logging_points_never_read_the_device(samples):
    # The "meta" device is a stub accelerator whose tensors have no values: any host read of a device tensor
    # (.item(), float(), bool(), a data-dependent shape) raises. Three steps of everything the training loop does
    # between logging points (step, EMA, clipping, the extra loss, the running sums) must run on it.
    from engine.ema import ExponentialMovingAverage
    from engine.train import RunningLosses

    with pytest.raises(RuntimeError):
        torch.zeros((), device="meta").item()  # the stub does catch host reads
    config = load_config([], {**TINY, "extra_loss": "location", "grad_clip": 1.0})
    device = torch.device("meta")
    model = get_model(config).to(device)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 10)
    ema, running = ExponentialMovingAverage(model, 0.9), RunningLosses()
    for step in range(3):
        losses = training_step(model, build_formulation(config), batch() if samples == "float" else loader_batch(),
                               config, device, optimizer, scheduler,
                               torch.amp.GradScaler("cpu", enabled=False), autocast_for(config, device),
                               torch.contiguous_format, step, ema)
        running.add(losses, step)
    assert losses["loss"].device == device and running.steps == 3
    with pytest.raises(RuntimeError):
        running.means()  # the logging point is where the host reads


def test_a_nan_loss_stops_the_run_at_the_next_check_naming_its_step(monkeypatch):
    import engine.train
    from engine.data import diffusion_draws
    from engine.train import RunningLosses

    def poisoned(indices, step, *args):
        t, noise = diffusion_draws(indices, step, *args)
        return t, noise * (float("nan") if step == 1 else 1.0)

    monkeypatch.setattr(engine.train, "diffusion_draws", poisoned)
    config = load_config([], TINY)
    model = get_model(config)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 10)
    running = RunningLosses()
    for step in range(3):
        losses = training_step(model, build_formulation(config), batch(), config, torch.device("cpu"), optimizer,
                               scheduler, torch.amp.GradScaler("cpu", enabled=False),
                               autocast_for(config, torch.device("cpu")), torch.contiguous_format, step)
        running.add(losses, step)
        if step == 0:
            assert running.means()["in_frame"] == 3  # a finite loss passes the check
    with pytest.raises(FloatingPointError, match=r"the loss is nan at step 2 \(found at step 3\)"):
        running.means()
    with pytest.raises(FloatingPointError, match="at step 2"):
        running.check_finite()  # and before every checkpoint (engine.train.run's save)

"""Training options: coupled (Adam L2) versus decoupled (AdamW) weight decay, gradient clipping at the configured
max norm, and torch.compile wiring (parameter names unchanged, same outputs)."""
import pytest
import torch

from engine.build import build_formulation
from engine.config import load_config
from engine.train import AMP_DTYPES, autocast_for, compile_model, training_step
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer
from tests.test_training_step import TINY, batch


def test_coupled_weight_decay_is_adam_l2_and_default_is_decoupled(single_thread):
    lr, decay = 0.1, 0.5
    for coupled in (False, True):
        config = load_config([], {"lr": lr, "weight_decay": decay, "coupled_weight_decay": coupled})
        unet, gaze = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        optimizer = build_optimizer(unet.parameters(), gaze.parameters(), config)
        assert type(optimizer) is (torch.optim.Adam if coupled else torch.optim.AdamW)
        parameter = unet.weight
        before = parameter.detach().clone()
        parameter.grad = torch.zeros_like(parameter)  # no loss gradient: only the decay acts
        optimizer.step()
        if coupled:  # g = decay * w enters Adam's moments: the first step moves by lr * g / (|g| + eps)
            gradient = decay * before
            expected = before - lr * gradient / (gradient.abs() + 1e-8)
        else:
            expected = before * (1 - lr * decay)
        assert torch.allclose(parameter.detach(), expected, atol=1e-6)


@pytest.mark.parametrize("grad_clip", [0.0, 0.01])
def test_gradient_clipping_bounds_the_global_norm(grad_clip, single_thread):
    config = load_config([], {**TINY, "grad_clip": grad_clip})
    torch.manual_seed(1)
    model = get_model(config)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 10)
    norms = []

    def record_the_norm(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    optimizer.register_step_pre_hook(record_the_norm)
    device = torch.device("cpu")
    scaler = torch.amp.GradScaler("cpu", enabled=AMP_DTYPES[config.amp] is torch.float16)
    training_step(model, build_formulation(config), batch(), config, device, optimizer, scheduler, scaler,
                  autocast_for(config, device), torch.contiguous_format, step=0)
    if grad_clip:
        assert norms[0] <= grad_clip * (1 + 1e-4)
    else:
        assert norms[0] > 1.0  # diffusion_weight 1e5: far above the clipped norm, so the clipped case proves something


def test_torch_compile_option_compiles_unet_and_backbone_in_place(single_thread):
    config = load_config([], {**TINY, "torch_compile": True})
    torch.manual_seed(0)
    model = get_model(config).eval()
    names = list(model.state_dict())
    data = batch()
    with torch.no_grad():
        expected = model.inout_logit(model.encode(data["image"], data["head_mask"], data["face"])["scene_face_feat"])
    compile_model(model, backend="eager")  # the wiring; "eager" traces with dynamo without a C++ toolchain
    assert model.unet._compiled_call_impl is not None and model.gaze_backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == names  # checkpoints and the optimizer are unaffected
    with torch.no_grad():
        found = model.inout_logit(model.encode(data["image"], data["head_mask"], data["face"])["scene_face_feat"])
    assert torch.allclose(found, expected, atol=1e-5)


def test_readme_amp_table_is_the_mapping_in_code():
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text()
    table = text[text.index("<!-- amp:start -->"):text.index("<!-- amp:end -->")].splitlines()[3:]
    documented = {}
    for row in table:
        levels, dtype, scaler = (cell.strip() for cell in row.strip("|").split("|")[:3])
        for level in levels.replace("`", "").split(", "):
            documented[level] = (dtype, scaler)
    assert set(documented) == set(AMP_DTYPES)
    for level, dtype in AMP_DTYPES.items():
        expected = ("none (float32)", "no") if dtype is None else (str(dtype).split(".")[1], "yes" if dtype is torch.float16 else "no")
        assert documented[level] == expected, level

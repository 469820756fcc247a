"""The two-group optimizer follows one schedule; checkpoints are atomic and restore every random generator."""
import random

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from engine.config import load_config
from optim import build_lr_scheduler, build_optimizer, learning_rates, lr_factor_fn


def two_groups(config, total_steps):
    unet, gaze = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    optimizer = build_optimizer(unet.parameters(), gaze.parameters(), config)
    return optimizer, build_lr_scheduler(optimizer, config, total_steps)


def rates_over(config, total_steps):
    optimizer, scheduler = two_groups(config, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(learning_rates(optimizer))
        optimizer.step()
        scheduler.step()
    return rates


def test_both_groups_follow_the_same_cosine_schedule_with_warmup():
    config = load_config([], {"lr": 1e-3, "lr_gaze": 1e-4, "lr_schedular": True})
    rates = rates_over(config, 100)
    for r in rates:
        assert r["lr_gaze"] == pytest.approx(r["lr_unet"] / 10)  # same factor, different base
    assert rates[0]["lr_unet"] == pytest.approx(1e-3 * 1 / 10)  # warm-up over 10 steps: (step + 1) / 10
    assert rates[9]["lr_unet"] == pytest.approx(1e-3)
    assert rates[10]["lr_unet"] == pytest.approx(1e-3)  # cosine starts at 1
    assert rates[55]["lr_unet"] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 45 / 90)))
    assert rates[99]["lr_unet"] < 1e-3 * 0.001


def test_warmup_linear_then_constant_and_anneal_to_zero():
    warm = rates_over(load_config([], {"lr": 2.0, "warmup_linear": True}), 50)
    assert [round(r["lr_unet"], 6) for r in warm[:5]] == [0.4, 0.8, 1.2, 1.6, 2.0]
    assert all(r["lr_unet"] == 2.0 for r in warm[5:])
    anneal = lr_factor_fn(load_config([], {"lr_anneal_steps": 40}), 40)
    assert [anneal(s) for s in (0, 10, 20, 40)] == [1.0, 0.75, 0.5, 0.0]
    with pytest.raises(ValueError, match="choose one schedule"):
        lr_factor_fn(load_config([], {"lr_anneal_steps": 4, "lr_schedular": True}), 10)


def test_weight_decay_is_decoupled_adamw():
    config = load_config([], {"lr": 0.1, "weight_decay": 0.5})
    optimizer, _ = two_groups(config, 1)
    parameter = optimizer.param_groups[0]["params"][0]
    before = parameter.detach().clone()
    parameter.grad = torch.zeros_like(parameter)  # no gradient: only the decoupled decay acts
    optimizer.step()
    assert torch.allclose(parameter.detach(), before * (1 - 0.1 * 0.5))


def test_checkpoint_write_is_atomic_and_restores_random_generators(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    state = load_checkpoint(path)  # the previous checkpoint is intact and nothing temporary is left behind
    assert state["step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]


def test_unsafe_checkpoint_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": {}, "callback": print}, path)  # needs arbitrary unpickling
    with pytest.raises(RuntimeError, match="weights_only=True"):
        load_checkpoint(path)


@pytest.mark.parametrize("coupled", [False, True])
def test_cpu_parameters_get_the_fused_step_with_the_default_steps_updates(coupled):
    """On the CPU the optimizer is PyTorch's fused kernel (one pass over all parameters); its updates are those of
    the default per-tensor loop (to float rounding) for AdamW and the coupled-decay Adam, with both groups' rates."""
    config = load_config([], {"lr": 1e-2, "lr_gaze": 1e-3, "weight_decay": 0.05, "coupled_weight_decay": coupled})
    torch.manual_seed(0)
    unet, gaze = torch.nn.Linear(8, 4), torch.nn.Linear(4, 2)
    optimizer = build_optimizer(unet.parameters(), gaze.parameters(), config)
    assert optimizer.defaults["fused"] is True
    assert isinstance(optimizer, torch.optim.Adam if coupled else torch.optim.AdamW)
    loop_unet, loop_gaze = (torch.nn.Linear(8, 4), torch.nn.Linear(4, 2))
    loop_unet.load_state_dict(unet.state_dict())
    loop_gaze.load_state_dict(gaze.state_dict())
    initial = unet.weight.detach().clone()
    loop = type(optimizer)([{"params": list(loop_unet.parameters()), "lr": 1e-2},
                            {"params": list(loop_gaze.parameters()), "lr": 1e-3}], weight_decay=0.05, foreach=False)
    for step in range(5):
        inputs = torch.randn(3, 8)
        for u, g, opt in ((unet, gaze, optimizer), (loop_unet, loop_gaze, loop)):
            opt.zero_grad()
            g(u(inputs)).square().sum().backward()
            opt.step()
    fused_parameters = [*unet.parameters(), *gaze.parameters()]
    for fused, reference in zip(fused_parameters, [*loop_unet.parameters(), *loop_gaze.parameters()]):
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    assert (unet.weight - initial).abs().min() > 1e-3  # every weight moved: the comparison is not of two idle models


def test_parameters_on_another_device_keep_the_default_step():
    config = load_config([], {})
    unet, gaze = torch.nn.Linear(2, 2, device="meta"), torch.nn.Linear(2, 2, device="meta")
    assert build_optimizer(unet.parameters(), gaze.parameters(), config).defaults["fused"] is None

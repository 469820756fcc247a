"""EMA: the update rule on parameters and BatchNorm statistics, checkpointing, and evaluation with the averaged
weights (named in metrics.json), also through --eval_weights and after export to safetensors; the JSONL log fields."""
import json

import pytest
import torch
from torch import nn

from engine.checkpoint import load_checkpoint
from engine.ema import ExponentialMovingAverage
from engine.train import run
from pretrained.export import main as export_main
from pretrained.loading import load_safetensors
from tests.tiny_runs import make_tiny_dataset, tiny_config


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.norm = nn.Linear(3, 4), nn.BatchNorm1d(4)
        self.register_buffer("constant", torch.tensor([0.1, 0.7]))


def test_ema_averages_parameters_and_batchnorm_statistics(single_thread):
    torch.manual_seed(0)
    net = Net()
    ema = ExponentialMovingAverage(net, rate=0.75)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    net.norm(net.linear(torch.randn(8, 3)))  # moves the running statistics and num_batches_tracked
    with torch.no_grad():
        net.linear.weight.add_(1.0)
    ema.update(net)
    now = net.state_dict()
    for key in ("linear.weight", "linear.bias", "norm.weight", "norm.running_mean", "norm.running_var"):
        assert torch.allclose(ema.averaged[key], 0.75 * start[key] + 0.25 * now[key], atol=1e-6), key
    assert not torch.equal(ema.averaged["norm.running_mean"], now["norm.running_mean"])
    assert ema.averaged["norm.num_batches_tracked"] == 1  # integer buffers are copied
    assert torch.equal(ema.averaged["constant"], start["constant"])  # exact: lerp of equal values

    trained = net.linear.weight.detach().clone()
    with ema.swapped_in(net):
        assert torch.equal(net.linear.weight, ema.averaged["linear.weight"])
    assert torch.equal(net.linear.weight, trained)

    restored = ExponentialMovingAverage(Net(), rate=0.75)
    restored.load_state_dict(ema.state_dict())
    assert all(torch.equal(restored.averaged[k], v) for k, v in ema.averaged.items())
    with pytest.raises(KeyError, match="missing"):
        restored.load_state_dict({"linear.weight": torch.zeros(4, 3)})


def test_training_with_ema_saves_and_evaluates_the_average(tmp_path, single_thread):
    dataset = make_tiny_dataset(tmp_path / "data")
    config = tiny_config(dataset, tmp_path, "ema", "--epochs", "2", "--ema_on", "--ema_rate", "0.5")
    trained = run(config)
    assert trained["evaluated_weights"] == "ema"
    state = load_checkpoint(tmp_path / "ema" / "last.pt")
    assert set(state["ema"]) == set(state["model"])
    changed = [k for k in state["model"] if state["model"][k].is_floating_point()
               and not torch.equal(state["model"][k], state["ema"][k])]
    assert any(k.startswith("unet.") for k in changed) and any("running_mean" in k for k in changed)

    evaluated = run(tiny_config(dataset, tmp_path, "eval_ema", "--eval_weights", str(tmp_path / "ema" / "last.pt"),
                                "--ema_on"))
    written = json.loads((tmp_path / "eval_ema" / "metrics.json").read_text())
    assert written["evaluated_weights"] == "ema"
    for key in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-9), key
    # The stored configuration has ema_on: without a flag the EMA is evaluated; --ema_on false picks the raw weights.
    assert run(tiny_config(dataset, tmp_path, "eval_stored", "--eval_weights", str(tmp_path / "ema" / "last.pt"))
               )["evaluated_weights"] == "ema"
    plain = run(tiny_config(dataset, tmp_path, "eval_model", "--eval_weights", str(tmp_path / "ema" / "last.pt"),
                            "--ema_on", "false"))
    assert plain["evaluated_weights"] == "model"
    assert json.loads((tmp_path / "eval_model" / "metrics.json").read_text())["changed_from_checkpoint"] == {
        "ema_on": {"checkpoint": True, "evaluation": False, "source": "command line"}}

    # Export of the evaluation weights (the EMA: trained with ema_on) to safetensors, evaluated again.
    code = export_main([str(tmp_path / "ema" / "last.pt"), str(tmp_path / "ema.safetensors")])
    assert code == 0
    tensors, metadata = load_safetensors(tmp_path / "ema.safetensors")
    assert metadata["evaluated_weights"] == "ema" and set(tensors) == set(state["ema"])
    assert all(torch.equal(tensors[k], state["ema"][k]) for k in tensors)
    exported = run(tiny_config(dataset, tmp_path, "eval_st", "--eval_weights", str(tmp_path / "ema.safetensors")))
    assert exported["evaluated_weights"] == "ema"
    for key in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang"):
        assert exported[key] == pytest.approx(trained[key], abs=1e-9), key

    # The JSONL log: every loss, each group's learning rate, throughput and GPU memory (null on CPU).
    log = [json.loads(line) for line in (tmp_path / "ema" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if r["type"] == "train"]
    assert {"loss", "loss_diffusion", "loss_inout", "in_frame", "lr_unet", "lr_gaze", "images_per_second",
            "gpu_memory_gb"} <= set(train[0]) and train[0]["gpu_memory_gb"] is None
    assert {"auc", "min_l2", "avg_l2", "min_ang", "avg_ang"} <= set(next(r for r in log if r["type"] == "eval"))


def test_ema_on_with_a_file_without_ema_is_an_error(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"model": {"unet.x": torch.zeros(1)}}, path)
    from pretrained.loading import load_checkpoint_state
    with pytest.raises(ValueError, match="no EMA weights found"):
        load_checkpoint_state(path, ema=True)

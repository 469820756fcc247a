"""Gaze backbones by name and by plug-in: the README's plug-in example, copied out of the README, trains for one
epoch on the synthetic data; evaluation imports the plug-in again from the checkpoint alone (a fresh process), and a
plug-in missing at evaluation is a clear error."""
import json
import re
import subprocess
import sys

import pytest
import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.config import parse_command_line
from engine.train import run
from models.backbones import BACKBONES, build_backbone, import_backbone_plugins, register_backbone
from models.build import backbone_name
from tests.conftest import ROOT
from tests.test_end_to_end import TINY
from tests.tiny_runs import make_tiny_dataset



def without(flags: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The command line without the flags starting with `prefixes` and their values."""
    kept, skipping = [], False
    for flag in flags:
        if flag.startswith("--"):
            skipping = flag.startswith(prefixes)
        if not skipping:
            kept.append(flag)
    return kept


NOT_RESNET = without(TINY, ("--list_resnet", "--resnet"))  # the tiny run; the plug-in reads no ResNet option


def readme_plugin() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- plugin-example:start -->\n```python\n(.*?)```\n<!-- plugin-example:end -->", text, re.S)
    assert block, "README.md lost its plug-in example markers"
    return block.group(1)


def test_readme_plugin_example_trains_and_evaluates_from_the_checkpoint(tmp_path):
    code = readme_plugin()
    assert 25 <= len(code.splitlines()) <= 40
    plugin = tmp_path / "my_backbone.py"
    plugin.write_text(code)
    dataset = make_tiny_dataset(tmp_path / "data")
    common = [*NOT_RESNET, "--source_dataset_dir", str(dataset), "--output_dir", str(tmp_path / "runs"), "--no_save"]
    config, _ = parse_command_line([*common, "--tag", "plugin", "--epochs", "1", "--backbone_plugins", str(plugin),
                                    "--gaze_backbone", "tiny_cnn"])
    trained = run(config)
    checkpoint = load_checkpoint(tmp_path / "runs" / "plugin" / "last.pt")
    assert checkpoint["epoch"] == 1
    assert checkpoint["config"]["gaze_backbone"] == "tiny_cnn"
    assert checkpoint["config"]["backbone_plugins"] == [str(plugin)]
    assert any(key.startswith("gaze_backbone.scene_backbone.") for key in checkpoint["model"])

    # A fresh process knows nothing of tiny_cnn: it must import the plug-in the checkpoint names.
    result = subprocess.run([sys.executable, "main.py", *common, "--tag", "eval", "--eval_weights",
                             str(tmp_path / "runs" / "plugin" / "last.pt")], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "runs" / "eval" / "metrics.json").read_text())
    for key in ("auc", "min_l2", "avg_l2"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key

    # The plug-in file has moved: evaluation names it and says what to do.
    moved = dict(checkpoint, config=dict(checkpoint["config"], backbone_plugins=[str(tmp_path / "gone.py")]))
    save_checkpoint(tmp_path / "moved.pt", moved)
    config, _ = parse_command_line([*common, "--tag", "eval2", "--eval_weights", str(tmp_path / "moved.pt")])
    with pytest.raises(ModuleNotFoundError, match=r"gone\.py.*--backbone_plugins"):
        run(config)
    config, _ = parse_command_line([*common, "--tag", "eval3", "--eval_weights", str(tmp_path / "moved.pt"),
                                    "--backbone_plugins", str(plugin)])  # its new location: allowed at evaluation
    assert run(config)["auc"] == pytest.approx(trained["auc"], abs=1e-6)


def test_missing_plugin_module_is_named():
    with pytest.raises(ModuleNotFoundError, match="'no_such_gaze_plugin'.*PYTHONPATH"):
        import_backbone_plugins(["no_such_gaze_plugin"])


def test_plugin_by_module_name_registers_once(tmp_path, monkeypatch):
    (tmp_path / "gaze_plugin_by_name.py").write_text(
        "from torch import nn\nfrom models.backbones import register_backbone\n"
        "@register_backbone('by_name_test')\nclass ByName(nn.Module):\n"
        "    def __init__(self, config):\n        super().__init__()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import_backbone_plugins(["gaze_plugin_by_name"])
        import_backbone_plugins(["gaze_plugin_by_name"])  # imported once: no second registration
        assert BACKBONES["by_name_test"].__name__ == "ByName"
        with pytest.raises(AttributeError, match=r"lacks the attributes \['context_dim'"):
            build_backbone("by_name_test", type("C", (), {"unet_context_vector": 8})())
    finally:
        BACKBONES.pop("by_name_test", None)
        sys.modules.pop("gaze_plugin_by_name", None)


def test_gaze_backbone_selects_by_name_and_attention_layout_keeps_chong():
    from engine.config import ConfigError, load_config

    def config(**values):
        return type("C", (), {"gaze_backbone": "original", "depth_flag": False, **values})()

    assert backbone_name(config()) == "original"
    assert backbone_name(config(gaze_backbone="chong")) == "chong"
    assert backbone_name(type("Old", (), {"depth_flag": False})()) == "original"  # stored before the option existed
    chong = {"adm_attention_module": True, "unet_context_vector": 512}
    assert load_config([], {"attention_layout": True, **chong}).gaze_backbone == "chong"  # the original's files
    with pytest.raises(ConfigError, match="'attention_layout' .* selects gaze_backbone 'chong'.*'gaze_backbone' "
                                          r"\(command line\) = 'timm'"):
        load_config([], {"gaze_backbone": "timm", "timm_model": "resnet18", "attention_layout": True})
    with pytest.raises(KeyError, match="unknown gaze backbone 'nope'.*register_backbone"):
        build_backbone("nope", config())
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("timm")(torch.nn.Identity)


def test_gaze_backbone_is_in_help():
    result = subprocess.run([sys.executable, "main.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    for flag in ("--gaze_backbone", "--backbone_plugins", "--timm_model", "--head_position", "--feature_cache",
                 "--backbone_weights", "--backbone_pretrained", "--train_augmentations"):
        assert flag in result.stdout, flag


def test_plugin_lists_from_flags_and_yaml(tmp_path):
    config, _ = parse_command_line(["--backbone_plugins", "a.py", "pkg.module"])
    assert config.backbone_plugins == ["a.py", "pkg.module"]
    assert parse_command_line(["--backbone_plugins"])[0].backbone_plugins == []
    (tmp_path / "g.yaml").write_text("Gaze:\n  backbone_plugins: [my plugins/b.py]\n  train_augmentations: flip\n")
    config, _ = parse_command_line(["--yaml_gaze", str(tmp_path / "g.yaml")])
    assert config.backbone_plugins == ["my plugins/b.py"] and config.train_augmentations == ["flip"]

"""Hub-style checkpoints (pretrained/hub.py): save_pretrained -> from_pretrained bit for bit, the generated model card,
a saved folder predicting and evaluating as its checkpoint does (predict.py, --eval_weights, --init_weights), a Hub
repository read offline from a pre-filled Hub cache, push_to_hub uploading the folder, and the export command. No
network: the Hub cache is written here and the Hub's upload API is replaced by a recorder.
"""
import json
import shutil

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import predict
from engine.config import parse_command_line
from engine.train import run
from inference.predictor import Predictor
from inference.sources import HeadBox
from models.build import get_model
from pretrained import export, hub
from pretrained.files import CheckpointError, load_checkpoint, load_safetensors
from pretrained.hub import HubCheckpoint
from pretrained.loading import load_init_weights
from tests.tiny_runs import make_tiny_dataset, tiny_config

HEAD_BOXES = [HeadBox("person1", np.array([20.0, 10.0, 44.0, 34.0]), "test box"),
              HeadBox("person2", np.array([70.0, 30.0, 96.0, 58.0]), "test box")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """Two tiny runs of two epochs (a checkpoint each epoch): one plain, one trained with ema_on."""
    root = tmp_path_factory.mktemp("hub")
    data = make_tiny_dataset(root / "data", n_train_images=4, n_test_images=1)
    for tag, flags in (("plain", ()), ("ema", ("--ema_on", "true"))):
        run(tiny_config(data, root / "runs", tag, "--epochs", "2", *flags))
    return root / "runs", data


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))


def assert_same_tensors(a: dict, b: dict):
    assert sorted(a) == sorted(b)  # (a safetensors file lists its tensors by name)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), key  # bit for bit (NaN payloads, -0.0 too)


def test_save_pretrained_then_from_pretrained_is_bitwise_the_same(runs, tmp_path):
    checkpoint = runs[0] / "ema" / "last.pt"
    saved = HubCheckpoint.from_checkpoint(checkpoint)
    stored = load_checkpoint(checkpoint)
    assert saved.evaluated_weights == "ema"  # auto: what the run evaluates
    assert_same_tensors(saved.state_dict, stored["ema"])
    assert saved.config == stored["config"]
    saved.save_pretrained(tmp_path / "first")
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "training.json"]  # no staging folder left behind
    loaded = HubCheckpoint.from_pretrained(tmp_path / "first")
    assert_same_tensors(loaded.state_dict, saved.state_dict)
    assert loaded.config == saved.config and loaded.training == saved.training
    assert loaded.evaluated_weights == "ema"
    loaded.save_pretrained(tmp_path / "second")  # and a second save writes the same files
    for name in ("config.json", "training.json", "README.md"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes(), name
    (first, first_metadata), (second, second_metadata) = (
        load_safetensors(tmp_path / name / "model.safetensors") for name in ("first", "second"))
    assert_same_tensors(first, second)  # (the header's metadata entries come in no fixed order)
    assert first_metadata == second_metadata == {"format": "diffusion-gaze", "evaluated_weights": "ema",
                                                 "source": str(checkpoint), "scheme": "project"}


def test_config_json_is_the_stored_configuration_and_trains_it_again(runs, tmp_path):
    checkpoint = runs[0] / "plain" / "last.pt"
    HubCheckpoint.from_checkpoint(checkpoint).save_pretrained(tmp_path)
    stored = load_checkpoint(checkpoint)["config"]
    assert json.loads((tmp_path / "config.json").read_text()) == stored
    config, _ = parse_command_line(["--yaml_diffusion", str(tmp_path / "config.json")])  # the card's command
    assert config.to_dict() == stored


def test_the_model_card_is_generated_from_the_run(runs, tmp_path):
    checkpoint = runs[0] / "plain" / "last.pt"
    export.main([str(checkpoint), str(tmp_path / "hub"), "--format", "hub"])
    metrics = json.loads((runs[0] / "plain" / "metrics.json").read_text())
    card = ModelCard.load(tmp_path / "hub" / "README.md")
    assert card.data.library_name == "diffusion-gaze" and card.data.datasets == ["gazefollow"]
    assert "gaze-following" in card.data.tags
    reported = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert reported == {name: metrics[name] for name in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang",
                                                         "heatmap_ap")}
    text = card.text
    assert f"| auc | {metrics['auc']:.4f} |" in text
    assert "Dataset: GazeFollow" in text and "2 epoch(s) (4 optimisation steps)" in text
    assert "python main.py --yaml_diffusion DIR/config.json" in text and "--eval_weights DIR" in text
    assert f"evaluation of `{checkpoint}`" in text
    assert json.loads((tmp_path / "hub" / "training.json").read_text())["metrics"]["auc"] == metrics["auc"]


def test_a_checkpoint_of_an_earlier_step_gets_no_metrics_of_a_later_evaluation(runs, tmp_path):
    # The run evaluated at its end (step 4); the epoch-1 checkpoint (step 2) was never evaluated.
    export.main([str(runs[0] / "plain" / "ckpt_epoch_1.pt"), str(tmp_path), "--format", "hub"])
    training = json.loads((tmp_path / "training.json").read_text())
    assert training["step"] == 2 and "metrics" not in training
    card = ModelCard.load(tmp_path / "README.md")
    assert not card.data.eval_results and "Not evaluated at the exported step" in card.text
    # a metrics.json given explicitly is reported
    export.main([str(runs[0] / "plain" / "ckpt_epoch_1.pt"), str(tmp_path), "--format", "hub", "--metrics",
                 str(runs[0] / "plain" / "metrics.json")])
    assert "metrics" in json.loads((tmp_path / "training.json").read_text())


def test_a_saved_folder_predicts_as_its_checkpoint(runs, tmp_path, image):
    for tag in ("plain", "ema"):
        checkpoint = runs[0] / tag / "last.pt"
        HubCheckpoint.from_checkpoint(checkpoint).save_pretrained(tmp_path / tag)
        original, folder = Predictor(checkpoint), Predictor(tmp_path / tag)
        assert folder.evaluated_weights == original.evaluated_weights == ("ema" if tag == "ema" else "model")
        for a, b in zip(original.predict(image, HEAD_BOXES), folder.predict(image, HEAD_BOXES)):
            assert np.array_equal(a.heatmap, b.heatmap) and a.inout == b.inout and a.gaze_point == b.gaze_point


def test_model_weights_of_an_ema_run_are_evaluated_as_model_weights(runs, tmp_path, image):
    checkpoint = runs[0] / "ema" / "last.pt"
    export.main([str(checkpoint), str(tmp_path), "--format", "hub", "--weights", "model"])
    folder = Predictor(tmp_path)
    raw = Predictor(checkpoint, overrides={"ema_on": False})
    assert folder.evaluated_weights == raw.evaluated_weights == "model"
    for a, b in zip(raw.predict(image, HEAD_BOXES), folder.predict(image, HEAD_BOXES)):
        assert np.array_equal(a.heatmap, b.heatmap)
    assert json.loads((tmp_path / "config.json").read_text())["ema_on"] is True  # config.json stays the run's


def test_predict_cli_and_eval_weights_accept_a_folder(runs, tmp_path, capsys):
    checkpoint, data = runs[0] / "plain" / "last.pt", runs[1]
    HubCheckpoint.from_checkpoint(checkpoint).save_pretrained(tmp_path / "hub")
    image_path = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image_path)
    tables = []
    for weights in (checkpoint, tmp_path / "hub"):
        out = tmp_path / f"predict_{weights.name}"
        assert predict.main(["--weights", str(weights), "--image", str(image_path), "--head_box", "20,10,44,34",
                             "--out", str(out)]) == 0, capsys.readouterr()
        tables.append((out / "predictions.csv").read_text().replace(str(out), ""))
    assert tables[0] == tables[1]
    summaries = []
    for weights in (checkpoint, tmp_path / "hub"):
        config, _ = parse_command_line(["--eval_weights", str(weights), "--source_dataset_dir", str(data),
                                        "--output_dir", str(tmp_path / "eval"), "--tag", weights.name, "--no_wandb",
                                        "true", "--num_workers", "0"])
        run(config)
        summaries.append(json.loads((tmp_path / "eval" / weights.name / "metrics.json").read_text()))
    for name in ("auc", "min_l2", "avg_l2", "evaluated_weights"):
        assert summaries[0][name] == summaries[1][name], name


def test_init_weights_reads_a_folder(runs, tmp_path):
    checkpoint = runs[0] / "plain" / "last.pt"
    HubCheckpoint.from_checkpoint(checkpoint).save_pretrained(tmp_path)
    config, _ = parse_command_line(["--yaml_diffusion", str(tmp_path / "config.json")])
    model = get_model(config, init_backbone_weights=False)
    report = load_init_weights(model, str(tmp_path))
    assert not report.missing and not report.unused
    assert_same_tensors(model.state_dict(), load_checkpoint(checkpoint)["model"])


def fill_hub_cache(cache, repo_id: str, folder, revision: str = "0123456789abcdef0123456789abcdef01234567"):
    """The Hub cache's layout (what `hf download` leaves): models--OWNER--NAME/snapshots/<commit>/<files>, and
    refs/main naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    return revision


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Hub cache that huggingface_hub reads offline (HF_HUB_OFFLINE): no request leaves the machine."""
    from huggingface_hub import constants

    cache = tmp_path / "hub_cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_hub_repository_is_read_offline_from_the_hub_cache(runs, tmp_path, offline_cache, image):
    checkpoint = runs[0] / "plain" / "last.pt"
    saved = HubCheckpoint.from_checkpoint(checkpoint)
    saved.save_pretrained(tmp_path / "hub")
    revision = fill_hub_cache(offline_cache, "someone/tiny-gaze", tmp_path / "hub")
    loaded = HubCheckpoint.from_pretrained("someone/tiny-gaze")
    assert_same_tensors(loaded.state_dict, saved.state_dict)
    assert loaded.config == saved.config
    original = Predictor(checkpoint).predict(image, HEAD_BOXES)
    for reference in ("hf-hub:someone/tiny-gaze", f"hf-hub:someone/tiny-gaze@{revision}"):
        from_hub = Predictor(reference).predict(image, HEAD_BOXES)
        assert all(np.array_equal(a.heatmap, b.heatmap) for a, b in zip(original, from_hub))
    with pytest.raises(FileNotFoundError, match="only the local Hub cache is read"):
        HubCheckpoint.from_pretrained("someone/not-downloaded")
    with pytest.raises(ValueError, match="expected hf-hub:OWNER/NAME"):
        load_checkpoint("hf-hub:no-owner")


def test_push_to_hub_uploads_the_saved_folder(runs, monkeypatch, capsys, tmp_path):
    import huggingface_hub.hub_mixin as mixin

    uploads = []

    class RecordingApi:  # the two calls ModelHubMixin.push_to_hub makes, recorded instead of sent
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=None, exist_ok=False):
            uploads.append(("create", repo_id, private))
            return type("Repo", (), {"repo_id": repo_id})()

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            files = {path.name: path.read_bytes() for path in sorted(folder_path.iterdir())}
            uploads.append(("upload", repo_id, files))
            return f"https://hub.invalid/{repo_id}/commit/1"

    monkeypatch.setattr(mixin, "HfApi", RecordingApi)
    HubCheckpoint.from_checkpoint(runs[0] / "plain" / "last.pt").save_pretrained(tmp_path)
    assert hub.main(["push", str(tmp_path), "someone/tiny-gaze", "--private"]) == 0
    assert "pushed" in capsys.readouterr().out
    (_, created, private), (_, uploaded, files) = uploads
    assert created == uploaded == "someone/tiny-gaze" and private is True
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "training.json"]
    for name, content in files.items():
        assert content == (tmp_path / name).read_bytes() or name == "model.safetensors", name
    (tmp_path / "pushed.safetensors").write_bytes(files["model.safetensors"])
    assert_same_tensors(load_safetensors(tmp_path / "pushed.safetensors")[0],
                        load_safetensors(tmp_path / "model.safetensors")[0])


def test_what_is_not_a_hub_folder_is_a_clear_error(runs, tmp_path, capsys):
    run_folder = runs[0] / "plain"
    with pytest.raises(CheckpointError, match="holds a training run: pass its checkpoint"):
        load_checkpoint(run_folder)
    (tmp_path / "empty").mkdir()
    assert predict.main(["--weights", str(tmp_path / "empty"), "--image", "x.png", "--head_box", "1,1,5,5"]) == 2
    assert "not a Hub-style folder: config.json, model.safetensors missing" in capsys.readouterr().err
    bare = tmp_path / "bare.pt"
    torch.save(load_checkpoint(run_folder / "last.pt")["model"], bare)  # a state dict without its configuration
    assert export.main([str(bare), str(tmp_path / "out"), "--format", "hub"]) == 2
    assert "stores no configuration" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        export.main([str(bare), str(tmp_path / "x.safetensors"), "--format", "onnx"])
    assert "must end in .onnx" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not finite"):
        HubCheckpoint({}, {"lr": float("inf")}).save_pretrained(tmp_path / "inf")


def test_a_folder_exports_again_to_safetensors(runs, tmp_path):
    HubCheckpoint.from_checkpoint(runs[0] / "ema" / "last.pt").save_pretrained(tmp_path / "hub")
    assert export.main([str(tmp_path / "hub"), str(tmp_path / "again.safetensors")]) == 0
    again, metadata = load_safetensors(tmp_path / "again.safetensors")
    assert_same_tensors(again, load_safetensors(tmp_path / "hub" / "model.safetensors")[0])
    assert metadata["evaluated_weights"] == "ema"

"""The Gaze360 trainer's experiment options (README "Gaze360 experiments") each change what they say, the original's
pre-processing equals torchvision's transforms as the original composed them, each frame is decoded once, and an
original MultiZoomGaze / Gaze360 checkpoint evaluates through the command line."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.errors import DataError
from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, load_config
from gaze360.build import make_dataset
from gaze360.data import ViewSpec, gaze360_dataset, random_walk, read_split_file, sequence_plan, window_paths
from gaze360.losses import pinball_loss
from gaze360.models import build_model
from gaze360.options import GAZE360
from gaze360.synthetic import write_gaze360, write_rtgene
from gaze360.train import make_optimizer, run
from gaze360_main import main
from tests.conftest import ROOT
from tests.gaze360_parity import seeded_state_dict

TINY_MODEL = {"backbone_layers": [1, 1], "backbone_inplanes": 4, "backbone_fc": 0, "feature_size": 8,
              "lstm_layers": 1}
TINY = {"device": "cpu", "no_wandb": True, "input_size": 24, "num_frames": 1, "crop_sizes": [24, 16],
        "batch_size": 4, "num_workers": 0, "epochs": 1, "lr": 1e-3, "print_every": 1, "save_every": 1, **TINY_MODEL}


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaze360")
    write_gaze360(root, seed=5, tracks={"train": 3, "validation": 2, "test": 2}, frames_per_track=14, sizes=(30, 30))
    return root


def _config(root, tmp_path, **changes):
    return load_config([], {**TINY, "dataset_dir": str(root), "output_dir": str(tmp_path), **changes}, GAZE360)


def _frames_coloured_by_number(root):
    """Replace every frame by a flat colour whose red channel is its frame number x 10."""
    for frame in (root / "imgs").rglob("*.jpg"):
        Image.new("RGB", (30, 22), (int(frame.stem) * 10 % 256, 128, 30)).save(frame, quality=100)


# --- pre-processing and decoding ------------------------------------------------------------------------------


def test_square_resize_and_crops_equal_the_originals_torchvision_pipeline(tmp_path):
    """The original (core/transforms.centercrop_transform): Resize((S, S)) -> CenterCrop(c) -> Resize((S, S)) ->
    ToTensor -> Normalize(ImageNet); a non-square frame is squashed."""
    transforms = pytest.importorskip("torchvision.transforms")
    row = "rec/head/000001/000010.jpg"
    (tmp_path / "imgs" / "rec/head/000001").mkdir(parents=True)
    texture = np.random.default_rng(0).integers(0, 255, (37, 50, 3), np.uint8)
    Image.fromarray(texture).save(tmp_path / "imgs" / row)
    (tmp_path / "test.txt").write_text(f"{row} 0 0 -1 \n")
    crops = (32, 28, 20)
    dataset = gaze360_dataset(tmp_path, "test", num_frames=1, train=False, missing_frames="error", seed=0,
                              spec=ViewSpec(32, crops))
    images = dataset[0]["images"]
    normalize = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    for i, crop in enumerate(crops):
        original = transforms.Compose([transforms.Resize((32, 32)), transforms.CenterCrop(crop),
                                       transforms.Resize((32, 32)), transforms.ToTensor(), normalize])
        torch.testing.assert_close(images[i], original(Image.open(tmp_path / "imgs" / row).convert("RGB")),
                                   atol=1e-6, rtol=0)
    kept = gaze360_dataset(tmp_path, "test", num_frames=1, train=False, missing_frames="error", seed=0,
                           spec=ViewSpec(32, crops, resize="shorter_side"))[0]["images"]
    assert not torch.allclose(kept, images, atol=1e-2)  # aspect-preserving resize: a different image


def test_each_frame_is_decoded_once_for_all_of_its_crops(root, tmp_path):
    decoded = []

    class Counting(type(make_dataset(_config(root, tmp_path), "test", train=False))):
        def decode(self, path):
            decoded.append(path)
            return super().decode(path)

    symmetric = make_dataset(_config(root, tmp_path, crop_sizes=[24, 20, 16, 12], symmetric_crops=True), "test",
                             train=False)
    symmetric.__class__ = Counting
    assert symmetric[0]["images"].shape[0] == 7 and len(decoded) == 1  # one frame, 7 crops: one decode
    decoded.clear()
    sequence = make_dataset(_config(root, tmp_path, num_frames=7, crop_sizes=[24, 20, 16, 12], symmetric_crops=True),
                            "test", train=False)
    sequence.__class__ = Counting
    assert sequence[0]["images"].shape[0] == 7 and len(decoded) == 7 == len(set(decoded))


def test_zip_layout_gives_frame_i_crop_i_and_all_gives_every_crop_of_every_frame(root, tmp_path):
    assert sequence_plan(7, 7, "zip") == [(i, i) for i in range(7)]
    assert sequence_plan(1, 4, "zip") == [(0, i) for i in range(4)]
    assert sequence_plan(7, 1, "zip") == [(i, 0) for i in range(7)]
    assert sequence_plan(3, 2, "all") == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    with pytest.raises(ConfigError, match="frame_crops.*'zip' gives frame i crop i"):
        _config(root, tmp_path, num_frames=7, crop_sizes=[24, 16])
    assert _config(root, tmp_path, num_frames=3, crop_sizes=[24, 16], frame_crops="all") is not None


def test_zoom_out_crops_are_padded_and_crop_size_noise_changes_training_views_only(root, tmp_path):
    zoomed = make_dataset(_config(root, tmp_path, crop_sizes=[48]), "test", train=False)[0]["images"][0]
    black = torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])
    torch.testing.assert_close(zoomed[:, 0, 0], black)  # a 48 crop of a 24 frame: half of it is black margin
    torch.testing.assert_close(zoomed[:, 12, 12], make_dataset(_config(root, tmp_path, crop_sizes=[24]), "test",
                                                               train=False)[0]["images"][0][:, 6:18, 6:18].mean(
        dim=(1, 2)), atol=0.6, rtol=0)
    plain = make_dataset(_config(root, tmp_path), "train", train=True)
    noisy = make_dataset(_config(root, tmp_path, crop_size_noise=4.0), "train", train=True)
    assert torch.equal(plain[0]["images"], make_dataset(_config(root, tmp_path), "train", train=True)[0]["images"])
    assert not torch.equal(plain[0]["images"], noisy[0]["images"])
    noisy_eval = make_dataset(_config(root, tmp_path, crop_size_noise=4.0), "test", train=False)
    assert torch.equal(noisy_eval[0]["images"], make_dataset(_config(root, tmp_path), "test", train=False)[0]["images"])


def test_eval_random_centre_crop_and_one_in_sequence_magnification(root, tmp_path):
    seq = dict(num_frames=7, crop_sizes=[24], temporal="lstm")
    base = make_dataset(_config(root, tmp_path, **seq), "test", train=False)
    always = make_dataset(_config(root, tmp_path, **seq, eval_random_crop_prob=1.0, eval_random_crop_size=12),
                          "test", train=False)
    half = make_dataset(_config(root, tmp_path, **seq, eval_random_crop_prob=0.5, eval_random_crop_size=12),
                        "test", train=False)
    one = make_dataset(_config(root, tmp_path, **seq, magnify_frame=2, magnify_size=12), "test", train=False)
    for index in range(len(base)):
        plain, everywhere, some, single = (d[index]["images"] for d in (base, always, half, one))
        changed = [not torch.equal(plain[i], everywhere[i]) for i in range(7)]
        assert all(changed)
        assert torch.equal(single[2], everywhere[2])  # image 2 magnified exactly as the eval crop does it
        assert [not torch.equal(plain[i], single[i]) for i in range(7)] == [i == 2 for i in range(7)]
        assert torch.equal(some, half[index]["images"])  # seeded per sample: the same draw every time
    flags = [[not torch.equal(base[i]["images"][k], half[i]["images"][k]) for k in range(7)] for i in range(len(base))]
    assert 0 < sum(map(sum, flags)) < 7 * len(base)


def test_reversed_time_random_walk_and_last_frame_windows(tmp_path):
    root = tmp_path / "coloured"
    write_gaze360(root, seed=5, tracks={"train": 3, "validation": 2, "test": 2}, frames_per_track=14, sizes=(30, 30))
    _frames_coloured_by_number(root)
    seq = dict(num_frames=7, crop_sizes=[24], temporal="lstm")

    def reds(images):
        return [round(float(images[k, 0].mean() * 0.229 + 0.485) * 255) for k in range(images.shape[0])]

    forward = make_dataset(_config(root, tmp_path, **seq), "train", train=True)
    reverse = make_dataset(_config(root, tmp_path, **seq, time_order="reverse"), "train", train=True)
    orders = set()
    for epoch in range(6):
        reverse.set_epoch(epoch)
        first, flipped = reds(forward[0]["images"]), reds(reverse[0]["images"])
        assert flipped in (first, first[::-1])
        orders.add(flipped == first)
    assert orders == {True, False}  # reversed in some epochs (probability 0.5), not in others
    walk = make_dataset(_config(root, tmp_path, **seq, time_order="random_walk", forward_bias=0.7), "train",
                        train=True)
    steps = random_walk(7, 0.7, np.random.default_rng(0))
    assert steps[3] == 3 and all(abs(a - b) == 1 for a, b in zip(steps, steps[1:]))
    frames = reds(walk[1]["images"])
    start = reds(forward[1]["images"])[0]
    assert all(abs(a - b) == 10 for a, b in zip(frames, frames[1:])) and frames[3] == start + 30
    path = read_split_file(root / "train.txt").paths[0]
    assert window_paths(path, 7, "last")[-1] == path and window_paths(path, 7)[3] == path
    last = make_dataset(_config(root, tmp_path, **seq, window="last", missing_frames="skip"), "train", train=False)
    assert last.skipped == 3 * 3  # per track, the first 3 rows lack 6 frames before them
    centred = make_dataset(_config(root, tmp_path, **seq), "train", train=False)
    same = centred.names.index(last.names[0])
    assert reds(last[0]["images"])[-1] == reds(centred[same]["images"])[3]  # the labelled frame comes last


# --- model, loss, optimisation ---------------------------------------------------------------------------------


def test_sincos45_targets_epsilon_pinball_and_sigma_free_model(root, tmp_path):
    config = _config(root, tmp_path, target="sincos45", loss="sincos_pinball")
    sample = make_dataset(config, "test", train=False)[0]
    yaw = float(sample["yaw_pitch"][0])
    expected = [math.sin(yaw + math.pi / 4), math.cos(yaw + math.pi / 4)]
    np.testing.assert_allclose(sample["sincos45"][3:].numpy(), expected, atol=1e-6)
    model = build_model(config.replace(temporal="maxpool"))
    assert model.head.out_features == 6 and model(sample["images"][None])["output"].shape == (1, 5)
    output, sigma = torch.zeros(1, 1), torch.zeros(1, 1)
    assert pinball_loss(output, sigma, torch.full((1, 1), 0.05), epsilon=0.1).item() == 0.0
    assert pinball_loss(output, sigma, torch.full((1, 1), 0.3), epsilon=0.1).item() == pytest.approx(0.2)
    assert pinball_loss(output, sigma, torch.full((1, 1), 0.3)).item() == pytest.approx(0.3)
    free = build_model(_config(root, tmp_path, with_sigma=False, loss="mse", target="yawpitch", temporal="maxpool"))
    assert free.head.out_features == 2
    with pytest.raises(ConfigError, match="with_sigma.*needs 'loss' = 'mse'.*leaves no sigma"):
        _config(root, tmp_path, with_sigma=False)


def test_optimizer_betas_and_spatial_transformer_learning_rate(root, tmp_path):
    config = _config(root, tmp_path, spatial_transformer=True, stn_lr_multiplier=0.25, adam_beta2=0.95,
                     temporal="maxpool")
    optimizer = make_optimizer(build_model(config), config)
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 2.5e-4]
    assert all(group["betas"] == (0.9, 0.95) for group in optimizer.param_groups)


def test_freeze_then_unfreeze_and_a_new_head_on_a_trained_backbone(root, tmp_path):
    base = dict(temporal="maxpool", epochs=1)
    torch.manual_seed(0)
    initial = build_model(_config(root, tmp_path, **base)).state_dict()
    run(_config(root, tmp_path, tag="frozen", freeze_backbone_epochs=1, **base))
    frozen = load_checkpoint(tmp_path / "frozen" / "last.pt")["model"]
    assert torch.equal(frozen["backbone.conv1.weight"], initial["backbone.conv1.weight"])
    assert torch.equal(frozen["feature.weight"], initial["feature.weight"])
    assert not torch.equal(frozen["head.weight"], initial["head.weight"])
    run(_config(root, tmp_path, tag="frozen", freeze_backbone_epochs=1, **{**base, "epochs": 2}))  # resumes, unfreezes
    thawed = load_checkpoint(tmp_path / "frozen" / "last.pt")["model"]
    assert not torch.equal(thawed["backbone.conv1.weight"], initial["backbone.conv1.weight"])
    # a new head (and fusion) on that trained backbone, the backbone kept frozen throughout
    run(_config(root, tmp_path, tag="new_head", init_weights=str(tmp_path / "frozen" / "last.pt"),
                init_weights_parts="backbone", freeze_backbone_epochs=5, seed=3, **base))
    new = load_checkpoint(tmp_path / "new_head" / "last.pt")["model"]
    assert torch.equal(new["backbone.conv1.weight"], thawed["backbone.conv1.weight"])
    assert not torch.equal(new["head.weight"], thawed["head.weight"])


def test_early_stopping_with_patience(root, tmp_path, capsys):
    run(_config(root, tmp_path, tag="stop", temporal="maxpool", epochs=6, lr=0.0, early_stopping_patience=2))
    assert load_checkpoint(tmp_path / "stop" / "last.pt")["epoch"] == 3  # epoch 1 best, 2 and 3 no better
    assert "early stopping at epoch 3" in capsys.readouterr().out


def test_attention_fusion_trains_from_its_config(root, tmp_path):
    metrics = run(_config(root, tmp_path, tag="attention", temporal="attention", attention_dim=6))
    assert metrics["test"]["model"]["all_360_count"] == len(read_split_file(root / "test.txt").paths)
    assert "attention.score.weight" in load_checkpoint(tmp_path / "attention" / "best.pt")["model"]


# --- original checkpoints and RT-GENE ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["msa", "seq_lstm"])
def test_original_checkpoint_evaluates_through_the_command_line(variant, root, tmp_path, capsys):
    """A file in the original's format ({'epoch', 'state_dict', 'best_prec1'}, 'module.' on every key; SeqLstm =
    Gaze360's gaze360_model.pth.tar layout) with the original's key names, small inputs."""
    import json

    fixture = json.loads((ROOT / "tests/fixtures/gaze360/original_parity.json").read_text())["variants"][variant]
    state = {f"module.{k}": v.float() if v.is_floating_point() else v
             for k, v in seeded_state_dict(fixture["keys"], 1).items()}
    torch.save({"epoch": 42, "state_dict": state, "best_prec1": 13.1}, tmp_path / "original.pth.tar")
    crops = ["40", "36", "32", "28"] if variant == "msa" else ["40"]
    args = ["--yaml", str(ROOT / f"configs/gaze360/{variant}.yaml"), "--eval_weights", str(tmp_path / "original.pth.tar"),
            "--dataset_dir", str(root), "--output_dir", str(tmp_path), "--device", "cpu", "--no_wandb",
            "--num_workers", "0", "--input_size", "40", "--batch_size", "8", "--crop_sizes", *crops]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"{len(fixture['keys'])} tensors mapped, none left over" in out
    assert "base_model.fc1.* -> backbone.fc." in out or "base_model_tail.2.* -> backbone.fc." in out
    metrics = json.loads((tmp_path / variant / "metrics.json").read_text())
    assert metrics["test"]["model"]["all_360_count"] == len(read_split_file(root / "test.txt").paths)
    state.pop(next(k for k in state if k.endswith("last_layer.bias")))
    state["module.extra.weight"] = torch.zeros(1)
    torch.save({"epoch": 1, "state_dict": state}, tmp_path / "bad.pth.tar")
    capsys.readouterr()  # a file that does not fit is one line and exit status 2, as in main.py (issue 23)
    assert main(args[:2] + ["--eval_weights", str(tmp_path / "bad.pth.tar")] + args[4:]) == 2
    error = capsys.readouterr().err
    assert "bad.pth.tar: 1 tensors have no place in this model" in error and "extra.weight" in error
    assert "Traceback" not in error


def test_rtgene_as_the_original_ran_it(tmp_path, capsys):
    root = tmp_path / "rtgene"
    write_rtgene(root, seed=0, images_per_subject=2, size=24)
    assert (root / "s003_glasses/original/face_before_inpainting/face_000002_rgb.png").is_file()
    config = load_config([ROOT / "configs/gaze360/rtgene_static.yaml"],
                         {**TINY, "dataset_dir": str(root), "output_dir": str(tmp_path), "epochs": 3,
                          "crop_sizes": [24], "early_stopping_patience": 1, "lr": 0.0}, GAZE360)
    assert (config.rtgene_face, config.adam_beta2, config.with_sigma, config.loss) == (
        "face_before_inpainting", 0.95, False, "mse")
    loose = make_dataset(config, "test", train=False, fold=1)
    inpainted = make_dataset(config.replace(rtgene_face="inpainted"), "test", train=False, fold=1)
    assert "face_before_inpainting" in str(loose.frame_files[0][0])
    assert not torch.equal(loose[0]["images"], inpainted[0]["images"])
    summary = run(config)
    assert sorted(summary["folds"]) == ["fold_1", "fold_2", "fold_3"]
    assert capsys.readouterr().out.count("early stopping at epoch 2") == 3


def test_an_unreadable_frame_is_skipped_and_counted_or_an_error_naming_it(tmp_path):
    root = tmp_path / "data"
    write_gaze360(root, seed=2, tracks={"train": 2, "validation": 1, "test": 2}, frames_per_track=8, sizes=(20, 20))
    broken = root / "imgs" / read_split_file(root / "test.txt").paths[1]
    broken.write_bytes(b"not a jpeg")  # exists (so construction keeps it), fails when decoded
    config = _config(root, tmp_path, tag="skip", temporal="maxpool", missing_frames="skip")
    metrics = run(config)
    rows = len(read_split_file(root / "test.txt").paths)
    assert metrics["test"]["skipped_samples"] == 1 and metrics["test"]["model"]["all_360_count"] == rows - 1
    with pytest.raises(DataError, match=f"the image {broken} is not a readable image"):  # before training starts
        run(config.replace(tag="strict", missing_frames="error"))


def test_magnification_deltas_are_checked_only_when_an_analysis_runs(root, tmp_path):
    assert _config(root, tmp_path, input_size=32, magnification_deltas=[0, 40]).input_size == 32
    with pytest.raises(ConfigError, match="'analysis'.*needs every magnification_deltas item < input_size"):
        _config(root, tmp_path, input_size=32, magnification_deltas=[0, 40], analysis="magnification",
                eval_weights="x.pt")


def test_a_checkpoint_of_the_earlier_layer_order_is_refused(tmp_path):
    from gaze360.checkpoints import model_state_from_checkpoint

    model = build_model(load_config([], {"temporal": "none", "num_frames": 1, **TINY_MODEL}, GAZE360))
    old = {"format": 1, "model": model.state_dict(), "config": {"temporal": "none"}}
    with pytest.raises(ValueError, match="before its networks became the original's"):
        model_state_from_checkpoint(old, model, "old.pt")
    state, report = model_state_from_checkpoint({**old, "config": {"feature_relu": False}}, model, "new.pt")
    assert state.keys() == model.state_dict().keys() and "this trainer's checkpoint" in report


def test_a_parameter_of_an_experiment_that_is_off_is_rejected(root, tmp_path):
    with pytest.raises(ConfigError, match="'stn_lr_multiplier' \\(command line\\) = 0.5 is read only with "
                                          "'spatial_transformer' on"):
        _config(root, tmp_path, stn_lr_multiplier=0.5)
    with pytest.raises(ConfigError, match="'forward_bias' .* is read only with 'time_order' = 'random_walk'"):
        _config(root, tmp_path, forward_bias=0.9)
    assert _config(root, tmp_path, forward_bias=0.9, time_order="random_walk").forward_bias == 0.9

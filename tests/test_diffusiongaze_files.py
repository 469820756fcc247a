"""A DiffusionGaze researcher's files and command lines: the thesis YAML pairs in the original's layout load with the
original's meanings (`adm` ignored with one notice, every other key kept), the shipped configs/thesis/ pairs hold the
same values, each pair starts a training run, and the original README's command lines mean what they meant.

The original-layout files are written here from the shipped configs/thesis/ values, with the original's section
names and spellings (`adm: false`, `diffuion_weight`, `is_subsample_test_set`) as the three public pairs have them
(branch main at b3bb434^, point_image_diffusion, PointLoss of Mostafa-Haggag/DiffusionGazeFollowingModel)."""
import subprocess
import sys

import pytest
import yaml

from engine.config import ConfigError, build_arg_parser, convert_value, load_config, parse_command_line
from engine.options import LEGACY_OPTIONS, OPTIONS_BY_NAME
from engine.original_layout import POINT_BRANCH_KEYS, POINT_FORMULATION
from engine.train import run
from tests.conftest import ROOT
from tests.test_end_to_end import TINY
from tests.tiny_runs import make_tiny_dataset

THESIS = ROOT / "configs" / "thesis"
PAIRS = ("main", "point_image_diffusion", "pointloss")
POINT_PAIRS = ("point_image_diffusion", "pointloss")
HAS_POINT = all(name in OPTIONS_BY_NAME for name in POINT_FORMULATION)  # issue 11b's diffusion_target

# The section each key sits in in the original files (gaze.yaml holds only `Gaze`).
ORIGINAL_SECTIONS = {
    "Dataset": """source_dataset source_dataset_dir num_workers gaze_point_threshold init_weights eval_weights lr epochs
        evaluate_every save_every print_every no_resume output_dir amp no_wandb no_save batch_size input_size output_size
        weight_decay ema_rate device channels_last""".split(),
    "Diffusion": """schedule_type unet_inout_channels unet_inplanes unet_residual list_unet_inplanes_multipliers
        list_unet_attention_levels unet_spatial_tf_heads unet_spatial_tf_layers unet_context_vector watch_wandb
        train_time_steps sample_time_steps unet_dropout inout_weight diffuion_weight adm adm_predict_xstart adm_predict_v
        adm_use_kl adm_rescale_timesteps adm_rescale_learned_sigmas adm_learn_sigma conv_resample resblock_updown
        use_scale_shift_norm adm_attention_module""".split(),
    "experiment_parameter": """factor_multiplier diff_normalization norm_std_flag random_flag random_sigma
        is_subsample_test_set Debugging_maps eval_from_picture clip_denoised lr_schedular warmup_linear fix_snr
        offset_noise_strength noise_changer ema_on lr_anneal_steps""".split(),
    "losses_parameters": "kl_div_loss x_loss other_loss mse_loss_weight_type".split(),
}
# What the project's files add to the original's keys.
PROJECT_ONLY = {"diffusion_target", "train_in_frame_only"}


def original_layout_pair(name: str, folder) -> list:
    """configs/thesis/<name>/ rewritten as the original's files: its sections, `adm: false`, its key spellings."""
    paths = []
    for file in ("diffusion.yaml", "gaze.yaml"):
        flat = {key: value for section in yaml.safe_load((THESIS / name / file).read_text()).values()
                for key, value in section.items() if key not in PROJECT_ONLY}
        renamed = {"diffusion_weight": "diffuion_weight", "test_subsample_fraction": "is_subsample_test_set"}
        flat = {renamed.get(key, key): value for key, value in flat.items()}
        if "adm" in flat:
            flat["adm"] = False  # what every thesis file says
        if "is_subsample_test_set" in flat:
            flat["is_subsample_test_set"] = bool(flat["is_subsample_test_set"])
        if file == "gaze.yaml":
            grouped = {"Gaze": flat}
        else:
            grouped = {section: {key: flat[key] for key in keys if key in flat}
                       for section, keys in ORIGINAL_SECTIONS.items()}
            placed = {key for keys in grouped.values() for key in keys}
            assert placed == set(flat), f"keys without an original section: {set(flat) - placed}"
        path = folder / f"{name}_{file}"
        path.write_text(yaml.safe_dump(grouped, sort_keys=False))
        paths.append(path)
    return paths


def project_pair(name: str) -> list:
    return [THESIS / name / "diffusion.yaml", THESIS / name / "gaze.yaml"]


@pytest.mark.parametrize("name", PAIRS)
def test_original_layout_files_load_with_the_original_meanings_and_equal_the_shipped_pair(name, tmp_path, capsys):
    original = original_layout_pair(name, tmp_path)
    if name in POINT_PAIRS and not HAS_POINT:
        # The point formulation is not in this build: the file is refused, naming the option it needs.
        with pytest.raises(ConfigError, match=r"factor_multiplier.*point-formulation branches.*diffusion_target"):
            load_config(original)
        return
    config = load_config(original)
    err = capsys.readouterr().err.splitlines()
    notices = [line for line in err if "'adm: false' has no effect" in line]
    point_notices = [line for line in err if "is read only by DiffusionGaze's point branches" in line]
    assert len(point_notices) == (1 if name in POINT_PAIRS else 0)  # one line for the pair, naming file and line
    assert len(notices) == 1  # one line, naming the file and line of `adm`
    adm_line = 1 + original[0].read_text().splitlines().index("  adm: false")
    assert notices[0].startswith(f"notice: {original[0]}:{adm_line}: ")
    assert config.adm is True and config.adm_predict_xstart is True
    shipped = load_config(project_pair(name))
    if name in POINT_PAIRS:  # the two branches' files are identical: the latest branch's (PointLoss) method
        assert config.diffusion_target == "point"
        config = config.replace(diffusion_target=shipped.diffusion_target)  # point_image for point_image_diffusion
    else:
        assert "diffusion_target" not in OPTIONS_BY_NAME or config.diffusion_target == "heatmap"
    assert config.to_dict() == shipped.to_dict()  # every other key kept its value


def test_the_point_branches_are_recognised_by_keys_only_their_code_read():
    assert POINT_FORMULATION == {"diffusion_target": "point"}  # issue 11b's option of the diffusion process
    for name in PAIRS:
        text = "".join((THESIS / name / file).read_text() for file in ("diffusion.yaml", "gaze.yaml"))
        assert any(f"  {key}:" in text for key in POINT_BRANCH_KEYS) == (name in POINT_PAIRS)


def test_project_layout_files_keep_the_strict_checks(tmp_path):
    project = tmp_path / "project.yaml"
    project.write_text("Diffusion process:\n  adm: false\n  adm_predict_xstart: true\n")
    with pytest.raises(ConfigError, match=r"'adm_predict_xstart' \(.*project\.yaml:3\).*'adm' \(.*project\.yaml:2\) is false"):
        load_config([project])
    flat = tmp_path / "flat.yaml"
    flat.write_text("adm: false\nadm_predict_xstart: true\n")
    with pytest.raises(ConfigError, match="is false"):
        load_config([flat])


def test_original_x_loss_off_drops_out_of_frame_training_rows_and_empty_amp_is_off(tmp_path, capsys):
    path = tmp_path / "diffusion.yaml"
    path.write_text("Dataset:\n  amp: ''\nlosses_parameters:\n  x_loss: false\n")
    config = load_config([path])
    assert config.x_loss is False and config.train_in_frame_only is True and config.amp == "off"
    assert f"x_loss is off ({path}:4) with a DiffusionGaze file" in capsys.readouterr().err
    assert load_config([path], {"x_loss": True}).train_in_frame_only is False  # as `--x_loss` did in the original
    kept = tmp_path / "kept.yaml"
    kept.write_text("Dataset:\n  train_in_frame_only: false\nlosses_parameters:\n  x_loss: false\n")
    assert load_config([kept]).train_in_frame_only is False  # said explicitly: kept
    assert load_config([], {"x_loss": False}).train_in_frame_only is False  # the project's own meaning


def test_in_frame_only_training_set_holds_exactly_the_in_frame_rows(tmp_path):
    from datasets import InFrameOnly, build_dataset

    dataset = make_tiny_dataset(tmp_path / "data", n_train_images=6)
    config = load_config([], {"source_dataset_dir": str(dataset), "device": "cpu", "input_size": 32, "output_size": 16})
    full = build_dataset(config, "train")
    only = build_dataset(config.replace(train_in_frame_only=True), "train")
    labels = full.inout_labels()
    assert isinstance(only, InFrameOnly) and 0 < len(only) == int((labels == 1).sum()) < len(full)
    assert all(float(only[(0, i)]["inout"]) == 1.0 for i in range(len(only)))
    assert {int(only[i]["index"]) for i in range(len(only))} == set(map(int, (labels == 1).nonzero()[0]))
    assert len(build_dataset(config.replace(train_in_frame_only=True), "test")) == len(build_dataset(config, "test"))


@pytest.mark.parametrize("name", PAIRS)
def test_each_thesis_pair_prints_its_values_and_trains_one_epoch(name, tmp_path, capsys, single_thread):
    if name in POINT_PAIRS and not HAS_POINT:
        pytest.skip("the point formulation (diffusion_target, issue 11b) is not in this build")
    dataset = make_tiny_dataset(tmp_path / "data")
    original = original_layout_pair(name, tmp_path)
    for pair in (original, project_pair(name)):
        config, printed = parse_command_line(["--yaml_diffusion", str(pair[0]), "--yaml_gaze", str(pair[1]),
                                              "--print_config"])
        assert printed and yaml.safe_load(config.to_yaml())["Diffusion process"]["adm"] is True
    pair = original if name != "point_image_diffusion" else project_pair(name)  # original layout: PointLoss's method
    argv = ["--yaml_diffusion", str(pair[0]), "--yaml_gaze", str(pair[1]), *TINY, "--init_weights", "",
            "--source_dataset_dir", str(dataset), "--output_dir", str(tmp_path / "out"), "--tag", name,
            "--epochs", "1", "--amp", "off"]
    config, _ = parse_command_line(argv)
    assert config.init_weights is None  # `--init_weights ''` unsets the file's pretrained/init_weights.pt
    summary = run(config)
    assert summary["n_samples"] > 0 and (tmp_path / "out" / name / "last.pt").is_file()


# The store_true / store_false flags of the original's command line (commit a26de24, config.py).
ORIGINAL_BOOLEANS = """is_subsample_test_set Debugging_maps watch_wandb norm_std_flag attention_layout random_flag
    noise_changer adm adm_use_kl adm_predict_xstart adm_predict_v lr_schedular fix_snr adm_rescale_timesteps
    adm_rescale_learned_sigmas adm_learn_sigma clip_denoised adm_attention_module eval_from_picture kl_div_loss x_loss
    other_loss no_resume channels_last freeze_scene freeze_face ema_on no_wandb no_save""".split()

# The two command lines of the original README (commit 52037c7): without and with the BCE loss.
README_LINE = ("--init_weights pretrained/init_weights.pt --watch_wandb --tag example_1 --adm_predict_xstart "
               "--diff_normalization 0.1 --norm_std_flag --random_flag --epochs 30 --lr_schedular "
               "--source_dataset_dir datasets/gazefollow_extended --source_dataset gazefollow{x_loss} "
               "--is_subsample_test_set --amp O1")


@pytest.mark.parametrize("x_loss", [False, True])
def test_the_original_readme_command_lines_parse_and_mean_what_they_meant(x_loss):
    line = README_LINE.format(x_loss=" --x_loss" if x_loss else "")
    config, _ = parse_command_line(line.split())
    assert config.init_weights == "pretrained/init_weights.pt" and config.watch_wandb is True
    assert config.tag == "example_1" and config.adm is True and config.adm_predict_xstart is True
    assert config.diff_normalization == 0.1 and config.norm_std_flag is True and config.random_flag is True
    assert config.epochs == 30 and config.lr_schedular is True and config.amp == "O1"
    assert config.source_dataset == "gazefollow" and config.source_dataset_dir == "datasets/gazefollow_extended"
    assert config.test_subsample_fraction == 0.0  # bare --is_subsample_test_set: the full test set
    if x_loss:
        assert config.x_loss is True and config.train_in_frame_only is False  # BCE, the full training set
    # Without --x_loss the line relied on the July 2023 defaults (x_loss off): configs/thesis/readme_2023 holds them.
    old, _ = parse_command_line(["--yaml_diffusion", str(THESIS / "readme_2023" / "diffusion.yaml"), "--yaml_gaze",
                                 str(THESIS / "readme_2023" / "gaze.yaml"), *line.split()])
    assert old.x_loss is x_loss and old.train_in_frame_only is (not x_loss)
    assert old.test_subsample_fraction == 0.0 and old.diff_normalization == 0.1 and old.adm_predict_xstart


@pytest.mark.parametrize("x_loss", [False, True])
def test_the_original_readme_command_lines_print_and_train_one_epoch(x_loss, tmp_path, single_thread):
    line = README_LINE.format(x_loss=" --x_loss" if x_loss else "").split()
    files = ["--yaml_diffusion", str(THESIS / "readme_2023" / "diffusion.yaml"),
             "--yaml_gaze", str(THESIS / "readme_2023" / "gaze.yaml")]
    printed = subprocess.run([sys.executable, "main.py", *files, *line, "--print_config"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    shown = yaml.safe_load(printed.stdout)
    assert shown["Diffusion process"]["diff_normalization"] == 0.1 and shown["Losses"]["x_loss"] is x_loss
    assert shown["Data"]["train_in_frame_only"] is (not x_loss) and shown["Data"]["test_subsample_fraction"] == 0.0
    dataset = make_tiny_dataset(tmp_path / "data")
    small = [*TINY, "--init_weights", "", "--source_dataset_dir", str(dataset), "--output_dir", str(tmp_path),
             "--epochs", "1", "--sample_time_steps", "2"]
    config, _ = parse_command_line([*files, *line, *small])
    assert config.amp == "O1" and config.random_flag and config.train_in_frame_only is (not x_loss)
    summary = run(config)
    assert summary["n_samples"] > 0 and (tmp_path / "example_1" / "last.pt").is_file()


def test_every_boolean_of_the_original_is_a_bare_switch():
    parser = build_arg_parser()
    declared = {**OPTIONS_BY_NAME, **{option.name: option for option in LEGACY_OPTIONS}}  # other_loss: extra_loss
    for name in ORIGINAL_BOOLEANS:
        given = vars(parser.parse_args([f"--{name}"]))
        assert given == ({"test_subsample_fraction": False} if name == "is_subsample_test_set" else {name: "true"})
        ((dest, value),) = given.items()
        assert convert_value(declared[dest], value, "flag") == (0.0 if dest == "test_subsample_fraction" else True)


def test_boolean_switches_bare_on_and_false_off_and_no_abbreviations(tmp_path, capsys):
    on = tmp_path / "on.yaml"
    on.write_text("no_wandb: true\nx_loss: true\n")
    config, _ = parse_command_line(["--yaml_diffusion", str(on), "--no_wandb", "false", "--x_loss", "false"])
    assert config.no_wandb is False and config.x_loss is False
    assert config.sources["no_wandb"] == "command line"
    config, _ = parse_command_line(["--adm_predict_xstart", "--x_loss", "--no_wandb", "--epochs", "3"])
    assert config.adm_predict_xstart and config.x_loss and config.no_wandb and config.epochs == 3
    assert parse_command_line(["--is_subsample_test_set", "true"])[0].test_subsample_fraction == 0.1
    assert parse_command_line(["--test_subsample_fraction", "0.25"])[0].test_subsample_fraction == 0.25
    for argv, message in ((["--epoch", "7"], "unknown option --epoch (did you mean 'epochs'?)"),
                          (["--no-x_loss"], "--x_loss false"),
                          (["--x_loss", "maybe"], "expected true or false")):
        with pytest.raises((SystemExit, ConfigError)) as caught:
            parse_command_line(argv)
        assert message in capsys.readouterr().err + str(caught.value)

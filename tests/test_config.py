"""Configuration: every original option declared once; precedence defaults < YAML < flags; each error names its file,
line and key."""
import subprocess
import sys
import textwrap

import pytest
import yaml

from engine.config import ConfigError, build_arg_parser, load_config, parse_command_line
from engine.options import ALIASES, LEGACY_OPTIONS, OPTIONS, OPTIONS_BY_NAME
from tests.conftest import ROOT

# The 70 flags of the original usage text and its YAML-only keys (original_system.md, issue 2).
ORIGINAL_FLAGS = """tag device input_size output_size batch_size source_dataset_dir source_dataset num_workers
gaze_point_threshold init_weights eval_weights list_resnet_scene_layers list_resnet_face_layers resnet_scene_inplanes
resnet_face_inplanes unet_inout_channels unet_inplanes unet_residual list_unet_inplanes_multipliers
list_unet_attention_levels unet_spatial_tf_heads unet_spatial_tf_layers unet_context_vector is_subsample_test_set
Debugging_maps watch_wandb diff_normalization norm_std_flag predict_sthg attention_layout random_flag train_time_steps
sample_time_steps unet_dropout offset_noise_strength noise_changer mse_loss_weight_type adm adm_use_kl
adm_predict_xstart adm_predict_v lr_schedular fix_snr adm_rescale_timesteps adm_rescale_learned_sigmas adm_learn_sigma
clip_denoised adm_attention_module eval_from_picture time_noise kl_div_loss x_loss other_loss lr epochs evaluate_every
save_every print_every no_resume output_dir amp channels_last freeze_scene freeze_face ema_on ema_rate lr_anneal_steps
weight_decay no_wandb no_save""".split()
YAML_ONLY = """schedule_type inout_weight diffusion_weight conv_resample resblock_updown use_scale_shift_norm
factor_multiplier random_sigma warmup_linear head_flag depth_flag list_resnet_depth_layers resnet_depth_inplanes""".split()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_original_option_is_declared_once_with_type_default_help_and_group():
    assert len(ORIGINAL_FLAGS) == 70
    names = [o.name for o in OPTIONS]
    assert len(names) == len(set(names))
    legacy = {option.name: option for option in LEGACY_OPTIONS}  # other_loss, kl_div_loss: read as extra_loss
    for name in ORIGINAL_FLAGS + YAML_ONLY:
        option = legacy.get(name) or OPTIONS_BY_NAME[ALIASES.get(name, name)]  # is_subsample_test_set: its alias
        assert option.help and option.group and option.kind
    help_text = build_arg_parser().format_help()
    for name in ORIGINAL_FLAGS:
        assert f"--{name}" in help_text


def test_defaults_reproduce_the_final_configuration_without_its_defects():
    config = load_config()
    assert config.list_resnet_scene_layers == [3, 4, 6, 3, 2] and config.unet_inplanes == 8
    assert config.list_unet_attention_levels == [2, 4, 8] and config.unet_context_vector == 1024
    assert config.diffusion_weight == 1e5 and config.inout_weight == 100 and config.diff_normalization == 3.0
    assert config.test_subsample_fraction == 0.0  # the full test set (the original subsampled 10 % of rows)
    assert isinstance(config.gaze_point_threshold, float) and config.gaze_point_threshold == 0.0


def test_shipped_configs_match_declared_defaults_except_paths_and_device_choices():
    config = load_config([ROOT / "configs/diffusion.yaml", ROOT / "configs/gaze.yaml"])
    defaults = load_config()
    differing = {name for name in defaults.to_dict() if getattr(config, name) != getattr(defaults, name)}
    assert differing == {"source_dataset_dir", "amp"}


def test_precedence_defaults_then_yaml_then_flags(tmp_path):
    first = write(tmp_path, "a.yaml", "lr: 1e-4\nepochs: 7\n")  # PyYAML reads 1e-4 as a string
    second = write(tmp_path, "b.yaml", "Gaze:\n  freeze_face: true\n")
    config = load_config([first, second], {"epochs": "3"})
    assert config.lr == pytest.approx(1e-4) and isinstance(config.lr, float)
    assert config.epochs == 3 and config.sources["epochs"] == "command line"
    assert config.freeze_face is True and config.sources["freeze_face"] == f"{second}:2"
    assert config.batch_size == OPTIONS_BY_NAME["batch_size"].default and config.sources["batch_size"] == "default"


def test_original_grouped_files_load_unchanged_with_the_original_spelling(tmp_path):
    diffusion = write(tmp_path, "diffusion.yaml", """\
        Dataset:
          lr: 2.5e-4
        Diffusion:
          diffuion_weight: 50000
          adm_attention_module: false
        experiment_parameter:
          is_subsample_test_set: false
        losses_parameters:
          x_loss: True
        """)
    gaze = write(tmp_path, "gaze.yaml", "Gaze:\n    adm_attention_module: false\n    list_resnet_face_layers:\n      - 3\n      - 4\n")
    config = load_config([diffusion, gaze])
    assert config.diffusion_weight == 50000.0 and config.test_subsample_fraction == 0.0
    assert config.list_resnet_face_layers == [3, 4]


def test_unknown_key_names_file_line_and_suggests(tmp_path):
    path = write(tmp_path, "a.yaml", "Dataset:\n  batch_size: 4\n  lr_schedualr: true\n")
    with pytest.raises(ConfigError, match=r"a\.yaml:3: unknown key 'lr_schedualr' \(did you mean 'lr_schedular'\?\)"):
        load_config([path])


def test_wrong_type_names_file_line_key_expected_and_found(tmp_path):
    path = write(tmp_path, "a.yaml", "epochs: ten\n")
    with pytest.raises(ConfigError, match=r"a\.yaml:1: key 'epochs': expected an integer, found 'ten'"):
        load_config([path])
    with pytest.raises(ConfigError, match=r"key 'device': expected one of"):
        load_config([], {"device": "tpu"})
    with pytest.raises(ConfigError, match=r"key 'list_unet_attention_levels': expected a non-empty list"):
        load_config([write(tmp_path, "b.yaml", "list_unet_attention_levels: [2, x]\n")])


def test_a_key_set_differently_in_the_two_files_is_an_error(tmp_path):
    first = write(tmp_path, "a.yaml", "Diffusion:\n  adm_attention_module: false\n")
    second = write(tmp_path, "b.yaml", "Gaze:\n  adm_attention_module: true\n")
    with pytest.raises(ConfigError, match=r"b\.yaml:2: key 'adm_attention_module' is set to True here but to False at .*a\.yaml:2"):
        load_config([first, second])
    duplicate = write(tmp_path, "c.yaml", "A:\n  lr: 0.1\nB:\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:4: key 'lr'"):
        load_config([duplicate])



def test_adm_options_in_the_simple_formulation_are_an_error():
    with pytest.raises(ConfigError, match="'adm_predict_xstart'.*'adm' .*is false"):
        load_config([], {"adm": False})
    config = load_config([], {"adm": False, "adm_predict_xstart": False, "predict_sthg": "pred_x0"})
    assert config.predict_sthg == "pred_x0"
    with pytest.raises(ConfigError, match="both true"):
        load_config([], {"adm_predict_v": True})


def test_command_line_flags_and_print_config_round_trip(tmp_path):
    config, wants_print = parse_command_line(["--epochs", "2", "--x_loss", "false", "--list_unet_attention_levels", "4", "8",
                                              "--print_config"])
    assert wants_print and config.epochs == 2 and config.x_loss is False
    assert config.list_unet_attention_levels == [4, 8]
    dumped = tmp_path / "resolved.yaml"
    dumped.write_text(config.to_yaml())
    assert load_config([dumped]).to_dict() == config.to_dict()
    assert set(yaml.safe_load(config.to_yaml())) >= {"Run", "Data", "Diffusion process"}


def test_main_reports_configuration_errors_with_exit_code_2(tmp_path):
    path = write(tmp_path, "a.yaml", "epoch: 3\n")
    result = subprocess.run([sys.executable, "main.py", "--yaml_diffusion", str(path), "--print_config"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown key 'epoch' (did you mean 'epochs'?)" in result.stderr
    result = subprocess.run([sys.executable, "main.py", "--lrr", "1"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option --lrr (did you mean 'lr'?)" in result.stderr


def test_readme_option_reference_is_generated_from_the_declarations():
    from engine.options import markdown_table

    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- options:start (generated by engine.options.markdown_table) -->\n")[1]
    assert block.split("<!-- options:end -->")[0] == markdown_table()


def test_cross_dataset_evaluation_needs_the_folder_of_the_other_dataset():
    with pytest.raises(ConfigError, match="'eval_dataset'.*differs from 'source_dataset'.*eval_dataset_dir"):
        load_config([], {"eval_dataset": "videoattentiontarget"})
    config = load_config([], {"eval_dataset": "videoattentiontarget", "eval_dataset_dir": "data/vat"})
    assert config.eval_dataset_dir == "data/vat"
    assert load_config([], {"eval_dataset": "gazefollow"}).eval_dataset == "gazefollow"
    for name in ("vat_frame_step",):
        with pytest.raises(ConfigError, match=f"'{name}'.*must be positive"):
            load_config([], {name: 0})

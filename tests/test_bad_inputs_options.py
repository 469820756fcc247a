"""Bad configurations, as a user writes them (issue 23): YAML features the loader does not read, option values outside
their declared range, options that cannot run together, `lr: 0`, `~` and `$VAR` in paths. Each case runs the entry
point (main.py / gaze360_main.py) and asserts the exit status, the first line of the message and that nothing was
written."""
import os
import subprocess
import sys
import textwrap

import pytest

import gaze360_main
import main
from engine.config import ConfigError, convert_value, load_config
from engine.options import OPTIONS
from gaze360.options import GAZE360
from tests.conftest import ROOT


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def run_main(entry, argv, capsys) -> tuple[int, str]:
    """(exit status, stderr) of an entry point's main(argv), as the shell would see them."""
    try:
        status = entry.main(argv)
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    return status, capsys.readouterr().err


def assert_refused(status, err, first_line_pattern, out_dir):
    import re

    lines = [line for line in err.splitlines() if not line.startswith("notice:")]
    assert status == 2, err
    assert re.match(first_line_pattern, lines[0]), lines[0]
    assert not out_dir.exists(), f"something was written to {out_dir}"


# --- YAML features the loader does not read -------------------------------------------------------------------------

YAML_CASES = {
    "merge_key": ("base: &base\n  lr: 0.001\nTraining:\n  <<: *base\n  epochs: 2\n",
                  r"configuration error: .*bad\.yaml:4: YAML merge keys \(<<\) are not read"),
    "python_tag": ("Run:\n  tag: !!python/object/apply:os.system ['touch {pwned}']\n",
                   r"configuration error: .*bad\.yaml:2: the YAML tag !!python/object/apply:os\.system is not read: "
                   r"option files hold plain values"),
    "python_name_tag": ("lr: !!python/name:os.getcwd\n",
                        r"configuration error: .*bad\.yaml:1: the YAML tag !!python/name:os\.getcwd is not read"),
    "custom_tag": ("epochs: 2\nlr: !include other.yaml\n",
                   r"configuration error: .*bad\.yaml:2: the YAML tag !include is not read"),
    "not_utf8": ("# options\nepochs: 2\n# r\xe9sum\xe9 of the run\n".encode("latin-1"),
                 r"configuration error: .*bad\.yaml:3: not UTF-8 text \(byte 0xe9\): save the file as UTF-8"),
    "bad_indentation": ("Training:\n  epochs: 2\n lr: 0.1\n",
                        r"configuration error: .*bad\.yaml:3: not valid YAML: "),
    "two_documents": ("epochs: 2\n---\nlr: 0.1\n", r"configuration error: .*bad\.yaml:2: not valid YAML: expected a "
                                                   r"single document in the stream; but found another document"),
    "top_level_list": ("- epochs\n- 2\n", r"configuration error: .*bad\.yaml:1: expected a mapping of options"),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_the_loader_does_not_read_is_one_line_naming_file_and_line(case, tmp_path, capsys):
    text, pattern = YAML_CASES[case]
    pwned = tmp_path / "PWNED"
    if isinstance(text, str):
        text = text.format(pwned=pwned)
    path = write(tmp_path, "bad.yaml", text)
    out = tmp_path / "out"
    status, err = run_main(main, ["--yaml_diffusion", str(path), "--output_dir", str(out)], capsys)
    assert_refused(status, err, pattern, out)
    assert len(err.strip().splitlines()) == 1 and not pwned.exists()


def test_the_same_yaml_errors_in_the_gaze360_trainer(tmp_path, capsys):
    path = write(tmp_path, "bad.yaml", "Training:\n  lr: !!python/object/apply:os.getcwd []\n")
    out = tmp_path / "out"
    status, err = run_main(gaze360_main, ["--yaml", str(path), "--output_dir", str(out)], capsys)
    assert_refused(status, err, r"configuration error: .*bad\.yaml:2: the YAML tag !!python/object/apply:os\.getcwd",
                   out)


def test_anchors_aliases_and_a_byte_order_mark_are_read(tmp_path):
    path = write(tmp_path, "ok.yaml", "\ufeffTraining:\n  lr: &rate 0.002\n  lr_gaze: *rate\n")
    config = load_config([path])
    assert config.lr == config.lr_gaze == 0.002 and config.sources["lr_gaze"] == f"{path}:3"


def test_a_folder_or_an_unreadable_file_given_as_yaml(tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_main(main, ["--yaml_diffusion", str(tmp_path), "--output_dir", str(out)], capsys)
    assert_refused(status, err, r"configuration error: configuration file not found: .* \(it is a folder\)", out)


# --- values outside their declared range ----------------------------------------------------------------------------

RANGE_CASES = [
    (["--seed", "-1"], r"configuration error: 'seed' \(command line\) must be in \[0, 4294967295\], found -1"),
    (["--seed", str(2**32)], r"configuration error: 'seed' \(command line\) must be in \[0, 4294967295\]"),
    (["--batch_size", "0"], r"configuration error: 'batch_size' \(command line\) must be positive, found 0"),
    (["--eval_batch_size", "-4"], r"configuration error: 'eval_batch_size' \(command line\) must be positive"),
    (["--num_workers", "-1"], r"configuration error: 'num_workers' \(command line\) must be >= 0, found -1"),
    (["--epochs", "0"], r"configuration error: 'epochs' \(command line\) must be positive"),
    (["--input_size", "0"], r"configuration error: 'input_size' \(command line\) must be positive"),
    (["--unet_dropout", "1"], r"configuration error: 'unet_dropout' \(command line\) must be in \[0, 1\), found 1"),
    (["--ema_on", "--ema_rate", "1"], r"configuration error: 'ema_rate' \(command line\) must be in \[0, 1\)"),
    (["--random_sigma", "0"], r"configuration error: 'random_sigma' \(command line\) must be positive"),
    (["--sample_time_steps", "2000"], r"configuration error: 'sample_time_steps' \(command line\) must be in "
                                      r"\[1, train_time_steps\] \('train_time_steps' \(default\) = 1000\), found 2000"),
    (["--list_unet_inplanes_multipliers", "1", "0", "2"],
     r"configuration error: 'list_unet_inplanes_multipliers' \(command line\) must be each item positive|"
     r"configuration error: 'list_unet_inplanes_multipliers' \(command line\) must be positive, every item, found "
     r"\[0\]"),
    (["--unet_inout_channels", "2"], r"configuration error: --unet_inout_channels: key 'unet_inout_channels': "
                                     r"expected one of \[1\], found 2"),
    (["--grad_clip", "-1"], r"configuration error: 'grad_clip' \(command line\) must be >= 0"),
    (["--lr", "-0.001"], r"configuration error: 'lr' \(command line\) must be >= 0"),
    (["--eval_from_picture", "--time_noise", "1000"],
     r"configuration error: 'time_noise' \(command line\) must be in \[0, train_time_steps\)"),
]


@pytest.mark.parametrize("flags, pattern", RANGE_CASES, ids=[" ".join(flags) for flags, _ in RANGE_CASES])
def test_a_value_outside_its_range_is_refused_with_the_configuration(flags, pattern, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_main(main, ["--device", "cpu", "--output_dir", str(out), *flags], capsys)
    assert_refused(status, err, pattern, out)


MODEL_CASES = [
    (["--output_size", "60"], r"configuration error: the model cannot be built from this configuration: output_size 60 "
                              r"\(heatmap side\) must be divisible by 8, the downsampling of a 4-level UNet .*"
                              r"\(output_size: command line\)"),
    (["--unet_context_vector", "256"], r"configuration error: the model cannot be built from this configuration: the "
                                       r"'original' gaze backbone .* unet_context_vector is 256"),
    (["--list_unet_attention_levels", "16"], r"configuration error: the model cannot be built .* never reaches"),
    (["--head_flag", "false", "--freeze_face"], r"configuration error: the model cannot be built .* no face stream"),
    (["--gaze_backbone", "nope"], r"configuration error: the model cannot be built from this configuration: unknown "
                                  r"gaze backbone 'nope'"),
]


@pytest.mark.parametrize("flags, pattern", MODEL_CASES, ids=[" ".join(flags) for flags, _ in MODEL_CASES])
def test_a_model_the_options_cannot_build_is_refused_before_the_run_folder(flags, pattern, tmp_path, capsys):
    """Built on the meta device when a fresh run starts: before the run folder, the data and the real model."""
    out = tmp_path / "out"
    data = tmp_path / "no_data_here"
    status, err = run_main(main, ["--device", "cpu", "--no_wandb", "--output_dir", str(out), "--source_dataset_dir",
                                  str(data), *flags], capsys)
    assert_refused(status, err, pattern, out)


GAZE360_CASES = [
    (["--seed", "-5"], r"configuration error: 'seed' \(command line\) must be in \[0, 4294967295\], found -5"),
    (["--batch_size", "0"], r"configuration error: 'batch_size' \(command line\) must be positive"),
    (["--num_workers", "-2"], r"configuration error: 'num_workers' \(command line\) must be >= 0"),
    (["--num_frames", "4"], r"configuration error: 'num_frames' \(command line\) = 4 needs an odd num_frames"),
    (["--crop_sizes", "224", "500"], r"configuration error: 'crop_sizes' \(command line\) = \[224, 500\] needs every "
                                     r"crop <= 2 x input_size"),
    (["--adam_beta2", "1"], r"configuration error: 'adam_beta2' \(command line\) must be in \[0, 1\), found 1"),
    (["--pinball_quantile", "0.5"], r"configuration error: 'pinball_quantile' \(command line\) must be in \(0, 0.5\)"),
    (["--rtgene_folds", "4"], r"configuration error: 'rtgene_folds' \(command line\) must be in \[1, 3\]"),
    (["--magnify_frame", "9"], r"configuration error: 'magnify_frame' \(command line\) = 9 needs -1 \(off\) or an "
                               r"image index"),
    (["--backbone_inplanes", "0"], r"configuration error: 'backbone_inplanes' \(command line\) must be positive"),
]


@pytest.mark.parametrize("flags, pattern", GAZE360_CASES, ids=[" ".join(flags) for flags, _ in GAZE360_CASES])
def test_gaze360_values_outside_their_range(flags, pattern, tmp_path, capsys):
    out = tmp_path / "out"
    status, err = run_main(gaze360_main, ["--device", "cpu", "--output_dir", str(out), *flags], capsys)
    assert_refused(status, err, pattern, out)


def test_the_demo_with_lr_anneal_steps_is_one_line_naming_both_options(tmp_path, capsys):
    """The issue's case, exactly as a user types it; and with the demo file in the original's spelling
    (`lr_schedular: true`, as the demo was written before lr_schedule)."""
    before = sorted(os.listdir(ROOT / "output")) if (ROOT / "output").is_dir() else None
    result = subprocess.run([sys.executable, "main.py", "--yaml_diffusion", "configs/demo/diffusion.yaml",
                             "--yaml_gaze", "configs/demo/gaze.yaml", "--lr_anneal_steps", "100"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error: 'lr_anneal_steps' (command line) = 100 is read only with 'lr_schedule' = "
        "'linear_anneal', but 'lr_schedule' (configs/demo/diffusion.yaml:43) = 'warmup_cosine': it is the length of "
        "the linear_anneal schedule (choose one schedule); leave 'lr_anneal_steps' out"]
    assert (sorted(os.listdir(ROOT / "output")) if (ROOT / "output").is_dir() else None) == before
    demo = (ROOT / "configs/demo/diffusion.yaml").read_text()
    old = write(tmp_path, "demo_old.yaml", demo.replace("lr_schedule: warmup_cosine", "lr_schedular: true"))
    out = tmp_path / "out"
    status, err = run_main(main, ["--yaml_diffusion", str(old), "--yaml_gaze", str(ROOT / "configs/demo/gaze.yaml"),
                                  "--output_dir", str(out), "--lr_anneal_steps", "100"], capsys)
    assert_refused(status, err, r"configuration error: 'lr_anneal_steps' \(command line\) = 100 is read only with "
                                r"'lr_schedule' = 'linear_anneal', but 'lr_schedule' \(.*demo_old.yaml:43, as "
                                r"lr_schedular: true\) = 'warmup_cosine'", out)


# --- lr: 0 ----------------------------------------------------------------------------------------------------------

def test_a_zero_learning_rate_is_said_once_but_allowed(tmp_path, capsys):
    """Decision: a warning, not an error. A run at lr 0 changes no weight, which is almost always a mistake, but it
    has uses (a pipeline check, a baseline of the starting weights through the same loop; the project's own tests
    stop early on a model that cannot improve), and issue 23 asks for a warning where the input is legitimate but
    suspicious."""
    path = write(tmp_path, "zero.yaml", "Training:\n  lr: 0\n")
    config = load_config([path])
    err = capsys.readouterr().err
    assert config.lr == 0.0
    assert err.splitlines() == [f"warning: 'lr' ({path}:2) = 0.0: with lr_gaze unset or 0 every parameter keeps its "
                                "starting value: the run trains a model that never changes (BatchNorm statistics and "
                                "the EMA still follow the data); fine for a pipeline check or a baseline of the "
                                "starting weights, else set lr > 0 (eval_weights evaluates weights without training)"]
    load_config([path])
    assert capsys.readouterr().err == ""  # said once per process
    load_config([path], {"lr_gaze": 1e-4})  # only the UNet is kept fixed: a choice, said by the user
    load_config([path], {"eval_weights": "w.pt"})  # evaluation trains nothing
    assert capsys.readouterr().err == ""
    load_config([], {"lr": 0.0}, GAZE360)
    assert capsys.readouterr().err.startswith("warning: 'lr' (command line) = 0.0: every parameter keeps its")


# --- ~ and $VAR in paths ----------------------------------------------------------------------------------------------

def path_options(table_options):
    return [option for option in table_options if option.path]


def test_every_path_option_expands_home_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RUNS", str(tmp_path / "scratch"))
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    for option in path_options(OPTIONS) + path_options(GAZE360.options):
        value = ["~/plugin.py"] if option.kind == "str_list" else "~/runs"
        expanded = convert_value(option, value, "test")
        assert expanded == ([str(tmp_path / "home" / "plugin.py")] if option.kind == "str_list"
                            else str(tmp_path / "home" / "runs")), option.name
        if option.kind != "str_list":
            assert convert_value(option, "$RUNS/x", "test") == str(tmp_path / "scratch" / "x")
            assert convert_value(option, "${RUNS}/x", "test") == str(tmp_path / "scratch" / "x")
            with pytest.raises(ConfigError, match=rf"key '{option.name}': the environment variable \$NOT_SET_ANYWHERE "
                                                  r"in '\$NOT_SET_ANYWHERE/x' is not set"):
                convert_value(option, "$NOT_SET_ANYWHERE/x", "test")
    with pytest.raises(ConfigError, match=r"cannot expand '~nosuchuser_xyz'"):
        convert_value(OPTIONS[2], "~nosuchuser_xyz/runs", "test")
    assert OPTIONS[2].name == "output_dir"


def test_output_dir_with_a_tilde_never_makes_a_folder_named_tilde(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "run.yaml", "Run:\n  output_dir: ~/runs\n")
    status, err = run_main(main, ["--yaml_diffusion", str(path), "--print_config"], capsys)
    assert status == 0
    config = load_config([path])
    assert config.output_dir == str(tmp_path / "home" / "runs")
    assert not (tmp_path / "~").exists()
    status, _ = run_main(gaze360_main, ["--output_dir", "~/g", "--dataset_dir", "$HOME/data", "--print_config"],
                         capsys)
    config = load_config([], {"output_dir": "~/g", "dataset_dir": "$HOME/data"}, GAZE360)
    assert status == 0 and config.output_dir == str(tmp_path / "home" / "g")
    assert config.dataset_dir == str(tmp_path / "home" / "data")

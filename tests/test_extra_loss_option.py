"""`extra_loss`, one option for the extra heatmap term, and where the old switches (`other_loss`, `kl_div_loss`,
`location_loss`) are translated: in files of this project's layout, flags and stored configurations as this
project's own terms; in a DiffusionGaze configuration (its section names, the shipped configs/thesis/ pairs) as the
original's objective, with one notice per known defect naming the file and key."""
import pytest
import yaml

from engine.config import ConfigError, load_config, parse_command_line
from engine.stored_config import apply_stored_config
from tests.conftest import ROOT

THESIS = ROOT / "configs" / "thesis"


def pair(name: str) -> list:
    return [THESIS / name / "diffusion.yaml", THESIS / name / "gaze.yaml"]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("flags, expected", [
    ({}, ("none", True, 1e5, False)),
    ({"x_loss": False}, ("none", False, 1.0, True)),
    ({"other_loss": True}, ("location_original", False, 1e5, False)),
    ({"other_loss": True, "x_loss": False}, ("location_original", False, 1e5, True)),
    ({"other_loss": True, "kl_div_loss": True}, ("kl_original", False, 1.0, False)),
    ({"other_loss": True, "kl_div_loss": True, "x_loss": False}, ("kl_original", False, 1.0, True)),
])
@pytest.mark.parametrize("name", ["main", "point_image_diffusion", "pointloss"])
def test_thesis_switches_give_the_original_objective(name, flags, expected):
    config = load_config(pair(name), flags)
    assert (config.extra_loss, config.x_loss, config.diffusion_weight, config.train_in_frame_only) == expected
    assert config.inout_weight == 100 and config.location_weight == 1e4 and config.kl_weight == 10
    assert not config.out_of_frame_diffusion_loss


def test_the_july_2023_command_lines_get_that_codes_hard_coded_objective():
    line = "--adm_predict_xstart --diff_normalization 0.1 --norm_std_flag --is_subsample_test_set".split()
    files = ["--yaml_diffusion", str(pair("readme_2023")[0]), "--yaml_gaze", str(pair("readme_2023")[1])]
    with_bce, _ = parse_command_line([*files, *line, "--x_loss"])
    assert (with_bce.diffusion_weight, with_bce.inout_weight, with_bce.x_loss) == (1.0, 0.01, True)
    assert with_bce.out_of_frame_diffusion_loss and not with_bce.train_in_frame_only
    location, _ = parse_command_line([*files, *line, "--other_loss"])
    assert (location.extra_loss, location.diffusion_weight, location.x_loss) == ("location_original", 1e5, False)


def test_each_known_defect_is_named_once_with_its_file_and_key(capsys):
    load_config(pair("pointloss"), {"other_loss": True})
    err = capsys.readouterr().err
    assert err.count("known defects kept: the soft-argmax location is in grid cells") == 1
    assert "command line: 'other_loss' in a DiffusionGaze configuration: the original's total is 1e5 x diffusion" in err
    config = load_config(pair("readme_2023"), {"x_loss": True, "adm_predict_xstart": True})
    err = capsys.readouterr().err
    line = 1 + pair("readme_2023")[0].read_text().splitlines().index(
        next(x for x in pair("readme_2023")[0].read_text().splitlines() if "out_of_frame_diffusion_loss" in x))
    assert err.count("a known defect, reproduced (out_of_frame_diffusion_loss: true)") == 1
    assert f"readme_2023/diffusion.yaml:{line}: the July 2023 code summed" in err
    assert config.out_of_frame_diffusion_loss


def test_a_files_other_loss_is_located_and_its_ignored_weight_said(tmp_path, capsys):
    path = write(tmp_path, "diffusion.yaml", "Diffusion:\n  diffuion_weight: 5000\nlosses_parameters:\n"
                 "  other_loss: true\n  kl_div_loss: true\n")
    config = load_config([path])
    assert (config.extra_loss, config.diffusion_weight, config.x_loss) == ("kl_original", 1.0, False)
    err = capsys.readouterr().err
    assert f"{path}:5: 'kl_div_loss' in a DiffusionGaze configuration: the original's total is diffusion + 10 x" in err
    assert f"{path}:2: diffusion_weight 5000 is not read by the original here" in err
    assert config.sources["diffusion_weight"].startswith(f"{path}:5 (DiffusionGaze: the original's total with")
    # A weight given on the command line is the user's: kept.
    assert load_config([path], {"diffusion_weight": 7.0}).diffusion_weight == 7.0


def test_extra_loss_on_the_command_line_gives_the_corrected_term_with_thesis_files():
    config = load_config(pair("main"), {"extra_loss": "location"})
    assert (config.extra_loss, config.x_loss, config.diffusion_weight) == ("location", True, 1e5)
    # The same level (both flags) disagreeing is an error; so is location_loss with a DiffusionGaze other_loss.
    with pytest.raises(ConfigError, match="select extra_loss 'location_original'.*sets extra_loss 'kl': give one"):
        load_config(pair("main"), {"other_loss": True, "extra_loss": "kl"})
    with pytest.raises(ConfigError, match="which this project added"):
        load_config(pair("main"), {"other_loss": True, "location_loss": "cross_entropy"})


def test_old_switches_in_this_projects_layout_and_flags_keep_their_meaning(tmp_path, capsys):
    path = write(tmp_path, "project.yaml", "Losses:\n  other_loss: true\n  kl_div_loss: true\n")
    config = load_config([path])
    assert config.extra_loss == "kl" and config.x_loss and config.diffusion_weight == 1e5
    assert "old switches kl_div_loss, other_loss are read as extra_loss: kl" in capsys.readouterr().err
    assert "other_loss" not in config.to_dict() and "extra_loss: kl" in config.to_yaml()
    flags, _ = parse_command_line(["--other_loss", "--location_loss", "cross_entropy"])
    assert flags.extra_loss == "cross_entropy"
    with pytest.raises(ConfigError, match="'other_loss' is an old switch of 'extra_loss'"):
        config.replace(other_loss=False)
    # A DiffusionGaze file with kl_div_loss alone: no effect, as in the original, said once.
    original = write(tmp_path, "original.yaml", "losses_parameters:\n  kl_div_loss: true\n")
    assert load_config([original]).extra_loss == "none"
    assert "'kl_div_loss' has no effect without 'other_loss'" in capsys.readouterr().err


def test_configurations_stored_by_earlier_versions_keep_their_meaning(capsys):
    stored = load_config().to_dict()
    del stored["extra_loss"], stored["out_of_frame_diffusion_loss"]
    for old, expected in (({"other_loss": True, "kl_div_loss": False, "location_loss": "softargmax"}, "location"),
                          ({"other_loss": True, "kl_div_loss": False, "location_loss": "cross_entropy"},
                           "cross_entropy"),
                          ({"other_loss": False, "kl_div_loss": False, "location_loss": "softargmax"}, "none"),
                          ({"other_loss": True, "kl_div_loss": True, "location_loss": "softargmax"}, "kl")):
        config, changes = apply_stored_config({**stored, **old}, {}, {}, checkpoint="old.pt", purpose="resume")
        assert config.extra_loss == expected and not config.out_of_frame_diffusion_loss and changes == []
    assert "old.pt: its run used this project's earlier KL term" in capsys.readouterr().err


def test_the_projects_own_configurations_use_the_projects_terms():
    demo = load_config([ROOT / "configs/demo/diffusion.yaml", ROOT / "configs/demo/gaze.yaml"])
    assert demo.extra_loss == "location" and demo.x_loss and demo.softargmax_beta == 2.0
    paper = load_config([ROOT / "configs/diffusion.yaml", ROOT / "configs/gaze.yaml"])
    assert paper.extra_loss == "none" and paper.x_loss and not paper.out_of_frame_diffusion_loss
    for folder in ("configs", "configs/demo", "configs/dinov2", "configs/dinov2/demo"):
        text = (ROOT / folder / "diffusion.yaml").read_text()
        assert "other_loss" not in yaml.safe_load(text).get("losses_parameters", {}) and "kl_div_loss" not in text

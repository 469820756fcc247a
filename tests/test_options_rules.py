"""Options carry their own rules (engine.option_rules): the declarations' bounds, needs, read_with and evaluation /
resume fields drive the checks, --help, docs/options.md and engine.stored_config; the original's flag pairs are one
option each (lr_schedule, gaze_backbone), their spellings translated where they enter."""
import json

import pytest

from engine.config import GAZE_FOLLOWING, ConfigError, build_arg_parser, load_config, parse_command_line
from engine.option_rules import (
    ALWAYS, Bounds, Check, Given, Is, Not, On, Rule, Unless, check_rules, rule_list,
)
from engine.options import BOOL, INT, STR, Option, OptionTable
from engine.stored_config import EVALUATION_TIME, RESUMABLE, apply_stored_config, evaluation_config
from gaze360.options import GAZE360
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "options"


def names_in(condition) -> set[str]:
    return set(condition.names)


# --- the declarations themselves ------------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [GAZE_FOLLOWING, GAZE360], ids=["main", "gaze360"])
def test_every_rule_names_declared_options(table):
    """A typo in a condition would make a rule that can never fire (or crash at the first configuration)."""
    known = set(table.by_name)
    for option in table.options:
        conditions = [rule.condition for rule in rule_list(option.needs)]
        if option.read_with is not None:
            conditions.append(option.read_with.condition if isinstance(option.read_with, Rule) else option.read_with)
        if option.resume_unless is not None:
            conditions.append(option.resume_unless.condition)
        for condition in conditions:
            assert names_in(condition) <= known, (option.name, names_in(condition) - known)
        if option.bounds is not None:
            assert set(option.bounds.names()) <= known, option.name
        if option.resume_unless is not None:
            assert option.resume, f"{option.name}: resume_unless without resume"


@pytest.mark.parametrize("table", [GAZE_FOLLOWING, GAZE360], ids=["main", "gaze360"])
def test_every_number_has_its_bounds(table):
    """The class, not the examples: every numeric option declares its interval (or, for the two whose range is
    another option's computation, a rule applied always)."""
    computed = {"magnify_frame"}  # -1 or an index of the sequence (gaze360.options.sequence_length)
    for option in table.options:
        if option.kind in ("int", "float", "int_list") and option.name not in computed:
            assert option.bounds is not None or option.choices is not None, f"{option.name} declares no bounds"
        if option.name in computed:
            assert any(rule.when == ALWAYS for rule in rule_list(option.needs)), option.name


@pytest.mark.parametrize("table", [GAZE_FOLLOWING, GAZE360], ids=["main", "gaze360"])
def test_every_file_or_folder_option_is_a_path(table):
    for option in table.options:
        if option.name.endswith(("_dir", "_weights", "_cache", "_plugins")):
            assert option.path, f"{option.name} is not declared path=True (~ would not be expanded)"


def test_the_stored_configuration_tables_come_from_the_declarations():
    assert EVALUATION_TIME == {o.name: o.evaluation for o in GAZE_FOLLOWING.options if o.evaluation}
    assert RESUMABLE == {o.name: o.resume for o in GAZE_FOLLOWING.options if o.resume}
    assert {"sampler", "sample_k", "eval_dataset", "batch_size"} <= set(EVALUATION_TIME)
    assert "lr" not in EVALUATION_TIME and "lr" not in RESUMABLE and "epochs" in RESUMABLE
    assert {"analysis", "eval_batch_size"} <= set(GAZE360.evaluation_time())
    assert {"epochs", "save_every"} <= set(GAZE360.resumable()) and "lr" not in GAZE360.resumable()


def test_help_shows_each_options_rules():
    help_text = " ".join(build_arg_parser().format_help().split())
    assert "--batch_size" in help_text and "[default: 16; positive" in help_text
    assert "read only with 'lr_schedule' = 'linear_anneal'" in help_text
    assert "The original's spellings" in help_text and "--lr_schedular" in help_text
    assert "[default: gaze360; " not in help_text  # (the other program's table)
    gaze360_help = " ".join(build_arg_parser(GAZE360).format_help().split())
    assert "[default: 7; positive; needs an odd num_frames" in gaze360_help


# --- the rule machinery on a table of its own -----------------------------------------------------------------------

REGISTRY = ["first"]


def tiny_table() -> OptionTable:
    options = (
        Option("switch", BOOL, False, "G", "a switch"),
        Option("level", INT, 2, "G", "a level", bounds=Bounds(1, "ceiling")),
        Option("ceiling", INT, 10, "G", "a ceiling", bounds=Bounds(1)),
        Option("name", STR, "first", "G", "chosen from a registry", choices=lambda: tuple(REGISTRY)),
        Option("extra", INT, 0, "G", "read only with the switch", read_with=On("switch")),
        Option("mode", STR, "a", "G", "a mode", choices=("a", "b"),
               needs=Rule(Check("'level' > 5", ("level",), lambda c: c.level > 5), "b runs deep", when=("b",))),
        Option("folder", STR, "out", "G", "a folder", path=True),
    )
    return OptionTable(options=options, groups=("G",), prog="tiny", description="", yaml_flags=(("yaml", ""),),
                       validate=lambda config: check_rules(config, config.table.options))


def test_choices_from_a_registry_are_read_when_a_value_is_checked():
    table = tiny_table()
    with pytest.raises(ConfigError, match=r"'name' \(command line\): expected one of \['first'\], found 'second' "
                                          r"\(names registered now\)"):
        load_config([], {"name": "second"}, table)
    REGISTRY.append("second")  # registered after the declaration, as a plug-in would
    try:
        assert load_config([], {"name": "second"}, table).name == "second"
        assert parse_command_line(["--name", "second"], table)[0].name == "second"
    finally:
        REGISTRY.remove("second")


def test_bounds_may_name_another_option_and_rules_say_which_options_are_involved():
    table = tiny_table()
    assert load_config([], {"level": 10}, table).level == 10
    with pytest.raises(ConfigError, match=r"'level' \(command line\) must be in \[1, ceiling\] \('ceiling' \(command "
                                          r"line\) = 4\), found 5"):
        load_config([], {"level": 5, "ceiling": 4}, table)
    with pytest.raises(ConfigError, match=r"'extra' \(command line\) = 3 is read only with 'switch' on, but 'switch' "
                                          r"\(default\) = False: leave 'extra' out"):
        load_config([], {"extra": 3}, table)
    assert load_config([], {"extra": 3, "switch": True}, table).extra == 3
    with pytest.raises(ConfigError, match=r"'mode' \(command line\) = 'b' needs 'level' > 5, but 'level' \(default\) "
                                          r"= 2: b runs deep"):
        load_config([], {"mode": "b"}, table)


def test_conditions_describe_themselves():
    assert Is("sampler", "ddim").text() == "'sampler' = 'ddim'"
    assert Not(Is("gaze_backbone", "timm", "chong")).text() == "'gaze_backbone' not one of 'timm', 'chong'"
    assert Not(On("no_wandb")).text() == "'no_wandb' off" and Given("eval_weights").text() == "'eval_weights' set"
    assert Bounds(0, 1, high_open=True).text() == "in [0, 1)" and Bounds(0, low_open=True).text() == "positive"
    with pytest.raises(TypeError):
        Is("switch")  # a switch is On(name): Is needs the values


def test_a_value_stored_in_a_checkpoint_is_not_refused_as_unread():
    """ema_rate stored by an EMA run is not the user's choice when its raw weights are evaluated with ema_on false."""
    stored = load_config([], {"ema_on": True, "ema_rate": 0.99}).to_dict()
    config, changes = evaluation_config({"format": 1, "config": stored}, {"ema_on": (False, "command line")},
                                        weights="ema.pt")
    assert config.ema_on is False and config.ema_rate == 0.99 and [c.name for c in changes] == ["ema_on"]
    with pytest.raises(ConfigError, match="'ema_rate' .* is read only with 'ema_on' on"):
        load_config([], {"ema_rate": 0.99})


# --- combinations that cannot run, or options another option leaves unread ------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"lr_anneal_steps": 100, "lr_schedule": "warmup_cosine"},
     r"'lr_anneal_steps' \(command line\) = 100 is read only with 'lr_schedule' = 'linear_anneal'"),
    ({"lr_schedule": "linear_anneal"}, r"'lr_schedule' .* = 'linear_anneal' needs 'lr_anneal_steps' > 0"),
    ({"lr_schedular": True, "warmup_linear": True}, r"'lr_schedular' .* and 'warmup_linear' .* are both true: "
                                                    r"choose one schedule"),
    ({"source_dataset": "videoattentiontarget", "test_subsample_fraction": 0.5},
     r"'test_subsample_fraction' .* is read only with the evaluated dataset"),
    ({"eval_dataset": "goo", "eval_dataset_dir": "x", "gaze_point_threshold": 0.2},
     r"'gaze_point_threshold' .* is read only with the evaluated dataset"),
    ({"vat_frame_step": 2}, r"'vat_frame_step' .* is read only with 'source_dataset' = 'videoattentiontarget'"),
    ({"goo_variant": "synth"}, r"'goo_variant' .* is read only with 'source_dataset' = 'goo' or 'eval_dataset' = "),
    ({"feature_cache_dtype": "float16"}, r"'feature_cache_dtype' .* is read only with 'feature_cache' set"),
    ({"coupled_weight_decay": True}, r"'coupled_weight_decay' .* is read only with 'weight_decay' > 0"),
    ({"trust_legacy_checkpoint": True}, r"'trust_legacy_checkpoint' .* read only with 'init_weights' set or "),
    ({"init_weights_scheme": "chong"}, r"'init_weights_scheme' .* read only with 'init_weights' set"),
    ({"original_ema_mix": False}, r"'original_ema_mix' .* read only with 'eval_weights' set and 'ema_on' on"),
    ({"x_loss": False, "inout_weight": 10.0}, r"'inout_weight' .* is read only with 'x_loss' on"),
    ({"predict_sthg": "pred_x0"}, r"'predict_sthg' .* is read only with 'adm' off"),
    ({"depth_layout": "tonini"}, r"'depth_layout' .* = 'tonini' is read only with 'depth_flag' on"),
    ({"gaze_backbone": "timm", "timm_model": "resnet18", "depth_flag": True},
     r"'depth_flag' .* is read only with 'gaze_backbone' != 'timm'"),
    ({"gaze_backbone": "diffusiongaze_depth", "depth_flag": True, "depth_layout": "tonini"},
     r"'depth_layout' .* = 'tonini' asks for Tonini et al.'s depth tokens, but 'gaze_backbone' .* = "
     r"'diffusiongaze_depth'"),
    ({"gaze_backbone": "timm", "timm_model": "resnet18", "attention_layout": True},
     r"'attention_layout' .* = True selects gaze_backbone 'chong' .* but 'gaze_backbone' .* = 'timm'"),
    ({"resnet_depth_inplanes": 32}, r"'resnet_depth_inplanes' .* is read only with 'gaze_backbone' != 'timm' and "
                                    r"'depth_flag' on"),
    ({"sync_batchnorm": True, "device": "cpu"}, r"'sync_batchnorm' .* needs 'device' = 'cuda'"),
])
def test_combinations_that_cannot_run_or_leave_an_option_unread_are_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], {"device": "cpu", **overrides})


def test_read_with_allows_the_option_where_it_is_read():
    assert load_config([], {"source_dataset": "videoattentiontarget", "vat_frame_step": 2}).vat_frame_step == 2
    assert load_config([], {"eval_dataset": "goo", "eval_dataset_dir": "d", "goo_variant": "synth"}).goo_variant
    assert load_config([], {"weight_decay": 0.01, "coupled_weight_decay": True}).coupled_weight_decay
    assert load_config([], {"init_weights": "w.pt", "trust_legacy_checkpoint": True}).trust_legacy_checkpoint
    assert load_config([], {"lr_schedule": "linear_anneal", "lr_anneal_steps": 10}).lr_anneal_steps == 10


# --- one option for each of the original's flag pairs ---------------------------------------------------------------

@pytest.mark.parametrize("overrides, schedule", [
    ({}, "constant"),
    ({"lr_schedular": True}, "warmup_cosine"),
    ({"warmup_linear": True}, "warmup_constant"),
    ({"lr_anneal_steps": 40}, "linear_anneal"),  # guided-diffusion's spelling, lr_schedule left unset
    ({"lr_schedular": False, "warmup_linear": False, "lr_anneal_steps": 0}, "constant"),  # the thesis files
    ({"lr_schedule": "warmup_cosine", "lr_schedular": True}, "warmup_cosine"),  # both spellings agree
])
def test_the_learning_rate_schedule_is_one_option_with_the_original_spellings_translated(overrides, schedule):
    config = load_config([], overrides)
    assert config.lr_schedule == schedule
    with pytest.raises(AttributeError, match="'lr_schedular' is the original's spelling of 'lr_schedule'"):
        config.lr_schedular  # noqa: B018
    assert "lr_schedular" not in config.to_dict() and "lr_schedular" not in config.to_yaml()


def test_a_flag_beats_a_file_whichever_spelling_each_uses(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("Training:\n  lr_schedular: true\n")
    new = tmp_path / "new.yaml"
    new.write_text("lr_schedule: warmup_cosine\n")
    assert load_config([old], {"lr_schedule": "constant"}).lr_schedule == "constant"
    assert load_config([new], {"lr_schedular": False}).lr_schedule == "constant"  # turns the file's schedule off
    assert load_config([new], {"warmup_linear": True}).lr_schedule == "warmup_constant"
    config = load_config([old])
    assert config.sources["lr_schedule"] == f"{old}:2, as lr_schedular: true"
    both = tmp_path / "both.yaml"
    both.write_text("lr_schedular: true\nlr_schedule: constant\n")
    with pytest.raises(ConfigError, match=r"'lr_schedular' \(.*both.yaml:1\) = True means lr_schedule "
                                          r"'warmup_cosine', but 'lr_schedule' \(.*both.yaml:2\) = 'constant'"):
        load_config([both])
    assert config.replace(lr_schedular=False).lr_schedule == "constant"
    assert load_config([]).replace(warmup_linear=True).lr_schedule == "warmup_constant"


@pytest.mark.parametrize("overrides, backbone", [
    ({"attention_layout": True}, "chong"),
    ({"depth_flag": True}, "diffusiongaze_depth"),  # the original's depth model
    ({"gaze_backbone": "original", "depth_flag": True}, "diffusiongaze_depth"),
    ({"depth_flag": True, "depth_layout": "diffusiongaze"}, "diffusiongaze_depth"),
    ({"depth_flag": True, "depth_layout": "tonini"}, "original_depth_tokens"),
    ({"attention_layout": True, "depth_flag": True, "depth_layout": "tonini"}, "chong"),
    ({"gaze_backbone": "chong", "depth_flag": True}, "chong"),  # Tonini et al.'s depth stream is chong's own
    ({"attention_layout": False, "depth_layout": "diffusiongaze"}, "original"),  # an old config.yaml's defaults
])
def test_the_backbone_is_chosen_by_name_with_the_layout_flags_translated(overrides, backbone):
    chong = {"adm_attention_module": True, "unet_context_vector": 512} if "chong" in backbone else {}
    config = load_config([], {**chong, **overrides})
    assert config.gaze_backbone == backbone
    assert "attention_layout" not in config.to_dict() and "depth_layout" not in config.to_dict()


STORED = json.loads((FIXTURES / "stored_configs_f8406c5.json").read_text())
NOW = {
    "demo": ([ROOT / "configs/demo/diffusion.yaml", ROOT / "configs/demo/gaze.yaml"], {}),
    "warmup_linear": ([], {"lr_schedule": "warmup_constant"}),
    "lr_anneal_steps": ([], {"lr_schedule": "linear_anneal", "lr_anneal_steps": 500}),
    "chong": ([], {"gaze_backbone": "chong", "adm_attention_module": True, "unet_context_vector": 512}),
    "depth_diffusiongaze": ([], {"gaze_backbone": "diffusiongaze_depth", "depth_flag": True}),
    "depth_tonini": ([], {"gaze_backbone": "original_depth_tokens", "depth_flag": True}),
    "chong_depth_tonini": ([], {"gaze_backbone": "chong", "adm_attention_module": True, "unet_context_vector": 512,
                                "depth_flag": True}),
}


@pytest.mark.parametrize("case", sorted(NOW))
def test_configurations_stored_by_the_previous_version_keep_their_meaning(case):
    """tests/fixtures/options: what commit f8406c5 stored in its checkpoints (old spellings included) resolves to
    the configuration the current names give, every option equal."""
    stored = STORED[case]
    assert {"lr_schedular", "attention_layout", "depth_layout"} <= set(stored)
    config, changes = evaluation_config({"format": 1, "config": stored}, {}, weights=f"{case}.pt")
    files, overrides = NOW[case]
    assert changes == [] and config.to_dict() == load_config(files, overrides).to_dict()
    resumed, _ = apply_stored_config(stored, {}, checkpoint=f"{case}.pt", purpose="resume")
    assert resumed.to_dict() == config.to_dict()


def test_a_run_length_schedule_keeps_its_epochs_on_resume():
    stored = load_config([], {"lr_schedule": "warmup_cosine", "epochs": 2}).to_dict()
    with pytest.raises(ConfigError, match=r"run.pt: epochs: 2 -> 4 \(command line\) on resume, but 'lr_schedule' "
                                          r"\(run.pt \(stored\)\) = 'warmup_cosine': it spreads the learning-rate"):
        apply_stored_config(stored, {"epochs": (4, "command line")}, checkpoint="run.pt", purpose="resume")
    constant = load_config([], {"epochs": 2}).to_dict()
    config, changes = apply_stored_config(constant, {"epochs": (4, "command line")}, checkpoint="run.pt",
                                          purpose="resume")
    assert config.epochs == 4 and [c.name for c in changes] == ["epochs"]


def test_the_original_command_line_switches_keep_working():
    config, _ = parse_command_line(["--lr_schedular", "--attention_layout", "--adm_attention_module",
                                    "--unet_context_vector", "512"])
    assert (config.lr_schedule, config.gaze_backbone) == ("warmup_cosine", "chong")
    config, _ = parse_command_line(["--depth_flag", "--depth_layout", "tonini", "--warmup_linear", "true"])
    assert (config.lr_schedule, config.gaze_backbone) == ("warmup_constant", "original_depth_tokens")


def test_unless_is_declared_for_the_run_length():
    from engine.options import OPTIONS_BY_NAME

    epochs = OPTIONS_BY_NAME["epochs"]
    assert isinstance(epochs.resume_unless, Unless) and epochs.resume

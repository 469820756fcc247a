"""Every option of the gaze-following diffusion framework, declared once with all its rules: name, type, default,
group, help, and (engine.option_rules) its bounds or choices, what it needs, what it is read with, whether it may
differ at evaluation or on resume, and whether it is a path.

The YAML loader, the command-line parser, `--help`, `--print_config`, the configuration checks, the options reference
(docs/options.md, `python -m engine.options`) and the evaluation / resume tables of engine.stored_config are all
generated from `OPTIONS`. Defaults reproduce the original DiffusionGaze final configuration (docs/options.md), except
where the original had a defect (full test set by default; `gaze_point_threshold` is a fraction). The original's
spellings of options that are now one option with named values (`lr_schedular`, `warmup_linear`,
`attention_layout`, `depth_layout`) are declared in engine.old_spellings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from engine.option_rules import (
    BELOW_ONE, NON_NEGATIVE, POSITIVE, SEED, UNIT_INTERVAL, All, AnyOf, Bounds, Check, Condition, Given, Is, Not, On,
    Rule, Unless, as_rule, rule_list,
)

# Value kinds understood by engine.config.convert_value.
INT, FLOAT, BOOL, STR, INT_LIST, FRACTION, RULES = "int", "float", "bool", "str", "int_list", "fraction", "rules"
STR_LIST = "str_list"  # a list of strings, possibly empty (YAML list, or space-separated words after the flag)

TRAIN_AUGMENTATIONS = ("jitter", "crop", "flip", "colour")  # datasets.transforms.sample_augmentation's steps
# Values of `extra_loss` (engine.losses computes them; docs/losses.md says which is which and why).
EXTRA_LOSSES = ("none", "location", "cross_entropy", "kl", "location_original", "kl_original")
ORIGINAL_EXTRA_LOSSES = ("location_original", "kl_original")  # the DiffusionGaze code's terms, as it computed them


@dataclass(frozen=True)
class Option:
    """One option. Beyond name, kind, default, group and help (see engine.option_rules for the rule fields):

    - choices: the allowed values, or a callable returning them (evaluated when needed, e.g. a registry's names).
    - bounds: the interval of a number, or of every item of an integer list (checked where the option is read).
    - needs: Rule(s) that must hold when the option is on or set (a combination that cannot run otherwise).
    - read_with: the condition under which anything reads the option; set away from its default otherwise, it is an
      error (a stored value excepted).
    - check: a function raising ValueError for a value the kind cannot describe (e.g. `min_snr_5`).
    - evaluation / resume: why the option may differ from a checkpoint's stored configuration when its weights are
      evaluated / its run resumes (None: part of the experiment, must match); resume_unless: when a resumable option
      may not change after all.
    - path: a file or folder: `~` and environment variables are expanded where the value enters.
    - replaced_by: for the original's spellings (engine.old_spellings): the option that now holds the choice.
    """

    name: str
    kind: str
    default: Any
    group: str
    help: str
    choices: tuple | Callable[[], Sequence] | None = None  # a callable: read from a registry when checked
    nullable: bool = False  # None (YAML `null`, or empty) is a valid value
    aliases: tuple[str, ...] = field(default_factory=tuple)  # other accepted YAML spellings
    bounds: Bounds | None = None
    needs: Rule | Condition | tuple = ()
    read_with: Rule | Condition | None = None
    check: Callable[[Any], Any] | None = None
    evaluation: str | None = None
    resume: str | None = None
    resume_unless: Unless | None = None
    path: bool = False
    replaced_by: str | None = None

    def allowed(self) -> tuple | None:
        """The choices, with a callable's evaluated now (a registry may have grown since the declaration)."""
        return tuple(self.choices()) if callable(self.choices) else self.choices


def _o(name, kind, default, group, help, **kw) -> Option:
    return Option(name, kind, default, group, help, **kw)


def registered(function: str) -> Callable[[], tuple]:
    """Choices that come from a registry: `formulations.<function>()`, called when a value is checked (in
    engine.config.validate, after the plug-ins a value needs are imported), so that a name a plug-in registers is
    accepted. Imported late: reading the options needs no torch."""

    def choices() -> tuple:
        import formulations

        return getattr(formulations, function)()

    choices.__qualname__ = f"formulations.{function}"
    return choices


RUN, DATA, GAZE, UNET, DIFF, LOSS, TRAIN, EVAL, LOG = (
    "Run", "Data", "Gaze backbone", "Diffusion UNet", "Diffusion process", "Losses", "Training", "Evaluation",
    "Logging",
)

# --- conditions the declarations share ------------------------------------------------------------------------------
# The backbones built from the ResNet options (models/backbones.py); timm's and plug-ins' read their own.
RESNET_BACKBONES = ("original", "chong", "diffusiongaze_depth", "original_depth_tokens")
TIMM_ONLY = Rule(Not(Is("gaze_backbone", *RESNET_BACKBONES)),
                 "it configures gaze_backbone timm (or a plug-in), not the ResNet backbones")
RESNET_ONLY = Rule(Not(Is("gaze_backbone", "timm")),
                   "the ResNet options configure the ResNet backbones (original, chong, diffusiongaze_depth, "
                   "original_depth_tokens); gaze_backbone timm's face stream is face_stream")
READS_DEPTH_RESNET = Rule(All(Not(Is("gaze_backbone", "timm")), On("depth_flag")),
                          "the depth ResNet exists only with depth_flag, in the ResNet backbones")
READS_WEIGHT_FILES = Rule(AnyOf(Given("init_weights"), Given("eval_weights")),
                          "it says how init_weights / eval_weights files are read")
EVALUATES_GAZEFOLLOW = Rule(
    Check("the evaluated dataset (eval_dataset, else source_dataset) = 'gazefollow'",
          ("eval_dataset", "source_dataset"), lambda c: (c.eval_dataset or c.source_dataset) == "gazefollow"),
    "only GazeFollow's test set has several annotators per person (the other datasets read no such option)")
READS_VAT = Rule(AnyOf(Is("source_dataset", "videoattentiontarget"), Is("eval_dataset", "videoattentiontarget")),
                 "an option of the VideoAttentionTarget loader")
READS_GOO = Rule(AnyOf(Is("source_dataset", "goo"), Is("eval_dataset", "goo")), "an option of the GOO loader")
HEAD_MASK_FROZEN = ("head_position mask_channel feeds the head mask through zero-initialised weights of the encoder's "
                    "first layer, which freeze_scene would keep at zero (the model would never see the head): use "
                    "head_position prompt with a frozen encoder")
FEATURE_CACHE_RULES = (
    Rule(All(Not(Is("gaze_backbone", *RESNET_BACKBONES)), On("freeze_scene"),
             AnyOf(Not(Is("gaze_backbone", "timm")), Is("head_position", "prompt"))),
         "it caches the frozen scene encoder's tokens, which are the same every epoch only with gaze_backbone timm "
         "(or a plug-in with encode_scene), freeze_scene true and head_position prompt (the encoder then sees the RGB "
         "image alone)"),
    Rule(Check("train_augmentations without crop and colour", ("train_augmentations",),
               lambda c: not {"crop", "colour"} & set(c.train_augmentations)),
         "crop and colour change the pixels the encoder sees differently every epoch, so cached tokens would be "
         "wrong; keep only jitter (head box only) and flip (cached per flip), e.g. --train_augmentations jitter flip"),
)


def sampler_in_use(config) -> str:
    """The sampler the options select: `sampler`, where auto is the original's rule of
    diffusion.sampling.default_sampler (DDIM when S < T, ancestral DDPM when S = T)."""
    if config.sampler != "auto":
        return config.sampler
    return "ddim" if config.sample_time_steps < config.train_time_steps else "ddpm"


_SAMPLING = ("sampler", "sample_time_steps", "train_time_steps")
DDIM_SAMPLING = Check("DDIM sampling (sampler ddim, or auto with sample_time_steps < train_time_steps)", _SAMPLING,
                      lambda c: sampler_in_use(c) == "ddim")
ANCESTRAL_SAMPLING = Check("ancestral sampling (sampler ddpm, or auto with sample_time_steps = train_time_steps)",
                           _SAMPLING, lambda c: sampler_in_use(c) == "ddpm")
ADM = On("adm")
ADM_ONLY = Rule(ADM, "it configures the ADM formulation; the simple formulation (adm false) is configured by "
                     "'predict_sthg' only")
PREDICTS_EPS = Check("an eps prediction", ("adm", "adm_predict_xstart", "adm_predict_v", "predict_sthg"),
                     lambda c: (not c.adm_predict_xstart and not c.adm_predict_v) if c.adm
                     else c.predict_sthg == "pred_noise")
LR_ZERO = ("with lr_gaze unset or 0 every parameter keeps its starting value: the run trains a model that never "
           "changes (BatchNorm statistics and the EMA still follow the data); fine for a pipeline check or a baseline "
           "of the starting weights, else set lr > 0 (eval_weights evaluates weights without training)")


def logging_options(print_every: int, group: str) -> tuple[Option, ...]:
    """The logging options both trainers declare (the Gaze360 table's too, with its own print_every default)."""
    return (
        _o("print_every", INT, print_every, group, "Print and log training statistics every N batches.",
           bounds=POSITIVE, evaluation="logging", resume="logging cadence"),
        _o("no_wandb", BOOL, False, group, "Disable Weights & Biases (on by default; offline when no account is set "
           "up).", evaluation="logging", resume="logging"),
        _o("watch_wandb", BOOL, False, group, "Log gradients and parameters to wandb (wandb.watch).",
           evaluation="logging", resume="logging"),
    )


def parse_mse_loss_weight_type(name: str):
    from diffusion.gaussian_diffusion import parse_mse_loss_weight_type as parse  # numpy/torch only when checking

    return parse(name)


OPTIONS: tuple[Option, ...] = (
    # --- run -----------------------------------------------------------------------------------------------------
    _o("tag", STR, "default", RUN, "Name of the run: outputs go to <output_dir>/<tag>.",
       evaluation="output", resume="output (a renamed run folder)"),
    _o("device", STR, "cuda", RUN, "Device to run on; an unavailable device is an error.", choices=("cpu", "cuda", "mps"),
       evaluation="execution"),
    _o("output_dir", STR, "output", RUN, "Folder that holds one sub-folder per run tag.",
       path=True, evaluation="output", resume="output (a moved run folder)"),
    _o("seed", INT, 0, RUN, "Seed of every random generator (torch, numpy, python, augmentations, sampling noise).",
       bounds=SEED, evaluation="sampling noise"),
    _o("no_resume", BOOL, False, RUN, "Start afresh even if <output_dir>/<tag> holds a checkpoint.",
       evaluation="training only", resume="run control"),
    _o("no_save", BOOL, False, RUN, "Keep only the latest checkpoint (enough to resume), not one every save_every.",
       evaluation="training only", resume="output"),
    _o("init_weights", STR, None, RUN, "Weights to initialise from (renamed with init_weights_scheme).", nullable=True,
       path=True, evaluation="training only", resume="read only by a fresh start"),
    _o("init_weights_scheme", STR, "auto", RUN,
       "Key naming of init_weights and eval_weights: auto-detected, or one of the built-in schemes.",
       choices=("auto", "project", "chong", "tonini", "diffusiongaze"),
       read_with=READS_WEIGHT_FILES, evaluation="weights"),
    _o("init_weights_rules", RULES, None, RUN,
       "Extra renaming rules for init_weights and eval_weights, YAML only: a list of [regex, replacement] pairs "
       "applied first (alone when auto-detection finds no known naming).",
       nullable=True, read_with=READS_WEIGHT_FILES, evaluation="weights"),
    _o("eval_weights", STR, None, RUN,
       "If set, only evaluate these weights (no training): a checkpoint in any supported naming scheme, a "
       ".safetensors export or a Hub-style folder (or hf-hub:OWNER/NAME, docs/hub.md), renamed with "
       "init_weights_scheme / init_weights_rules; with ema_on, the file's EMA weights (see original_ema_mix).",
       nullable=True, path=True, evaluation="weights"),
    _o("original_ema_mix", BOOL, True, RUN,
       "eval_weights with ema_on on a checkpoint of the original DiffusionGaze code: evaluate as the original did, "
       "the gaze backbone's own (non-averaged) weights with the averaged UNet and in/out head; false = every weight "
       "averaged. metrics.json names the weights evaluated.",
       read_with=All(Given("eval_weights"), On("ema_on")), evaluation="weights"),
    _o("trust_legacy_checkpoint", BOOL, False, RUN,
       "Allow init_weights / eval_weights files that need full (unsafe) unpickling, e.g. the original DiffusionGaze "
       "checkpoints; only for files you trust. Without it such files are refused.",
       read_with=READS_WEIGHT_FILES, evaluation="weights", resume="run control"),
    # --- data ----------------------------------------------------------------------------------------------------
    _o("source_dataset", STR, "gazefollow", DATA, "Dataset to train and evaluate on.",
       choices=("gazefollow", "videoattentiontarget", "goo")),
    _o("source_dataset_dir", STR, "data/gazefollow_synthetic", DATA,
       "Root folder of the dataset (default: the built-in synthetic GazeFollow, see `make data`).",
       path=True, evaluation="data location", resume="data location (the same data, moved)"),
    _o("input_size", INT, 224, DATA, "Side of the scene and face inputs in pixels.", bounds=POSITIVE),
    _o("output_size", INT, 64, DATA, "Side of the heatmap the diffusion model denoises.", bounds=POSITIVE),
    _o("batch_size", INT, 16, DATA, "Images per optimisation step (per process).",
       bounds=POSITIVE, evaluation="evaluation batch"),
    _o("num_workers", INT, 8, DATA,
       "DataLoader worker processes (0 = load in the main process); training workers persist across epochs.",
       bounds=NON_NEGATIVE, evaluation="execution", resume="workers"),
    _o("gaze_point_threshold", FLOAT, 0.0, DATA,
       "Fraction in [0, 1): drop test annotator points farther from the group mean than this quantile of their "
       "distances (0 = keep all). The original declared it int but used it as a fraction.",
       bounds=BELOW_ONE, read_with=EVALUATES_GAZEFOLLOW, evaluation="test protocol"),
    _o("test_subsample_fraction", FRACTION, 0.0, DATA,
       "Evaluate on a seeded per-person fraction of the test set (0 or 1 = the full set, the default). The "
       "original's is_subsample_test_set is accepted: in YAML true = 0.1 (its 10 %), false = 0; on the command line "
       "a bare --is_subsample_test_set = the full test set, as in the original.",
       aliases=("is_subsample_test_set",), read_with=EVALUATES_GAZEFOLLOW, evaluation="test data"),
    _o("train_in_frame_only", BOOL, False, DATA,
       "Drop the out-of-frame samples from the training set (what the original did whenever x_loss was off; a "
       "DiffusionGaze-layout file with x_loss off gets it)."),
    _o("random_flag", BOOL, False, DATA,
       "Draw each training heatmap with a random integer sigma in [7, 10] (the original's choice) instead of random_sigma."),
    _o("random_sigma", FLOAT, 3.0, DATA, "Sigma of the Gaussian target heatmap in output cells (3 = the benchmarks).",
       bounds=POSITIVE),
    _o("vat_smooth_head_boxes", BOOL, True, DATA,
       "VideoAttentionTarget: replace each head box by the 11-frame centred moving average of its person track "
       "(the reference does this in training and test).", read_with=READS_VAT),
    _o("vat_frame_step", INT, 1, DATA,
       "VideoAttentionTarget training: use every k-th frame of each person track (1 = all); evaluation always uses "
       "every frame.", bounds=POSITIVE, read_with=Is("source_dataset", "videoattentiontarget")),
    _o("train_augmentations", STR_LIST, list(TRAIN_AUGMENTATIONS), DATA,
       "Training augmentations applied (each with probability 0.5): jitter (head box enlarged), crop, flip, colour; "
       "an empty list trains on the plain images. Draws are the same whichever are on.",
       choices=TRAIN_AUGMENTATIONS, evaluation="training only"),
    _o("goo_variant", STR, "real", DATA, "GOO: which release source_dataset_dir holds (selects the pickle files).",
       choices=("real", "synth"), read_with=READS_GOO),
    _o("invalid_annotations", STR, "error", DATA,
       "An annotation row with an impossible value (NaN / inf, a head box with no area, an eye or in-frame gaze point "
       "outside the image): stop with an error naming file and line, or leave such rows out (counted, listed in the "
       "run folder's data_validation.csv).", choices=("error", "skip"),
       evaluation="test data (impossible rows: error or skip)"),
    _o("skip_validation", BOOL, False, DATA,
       "Do not read every image header again before training when these annotation files (same paths, sizes and "
       "modification times) were validated before (cached in <output_dir>/.data_validation); without such a "
       "result the data is validated anyway.", evaluation="execution", resume="run control (the data is the same)"),
    # --- gaze backbone -------------------------------------------------------------------------------------------
    _o("gaze_backbone", STR, "original", GAZE,
       "Registered gaze backbone: original (DiffusionGaze's ResNets; with depth_flag it is DiffusionGaze's depth "
       "model, diffusiongaze_depth), chong (Chong et al.'s layout; with depth_flag Tonini et al.'s depth stream), "
       "diffusiongaze_depth, original_depth_tokens (the original's streams plus a depth ResNet whose tokens join the "
       "conditioning), timm (any timm model, see timm_model), or a name registered by backbone_plugins. The "
       "original's attention_layout / depth_layout are accepted (docs/configuration.md).",
       needs=Rule(Given("timm_model"), "set 'timm_model' to a timm model name (e.g. vit_base_patch14_reg4_dinov2)",
                  when=("timm",))),
    _o("backbone_plugins", STR_LIST, [], GAZE,
       "Python modules (importable names or .py paths) imported before the model is built, and before the "
       "configuration is checked when it names a sampler, diffusion_target or heatmap_decoder not registered yet; "
       "they register gaze backbones (@register_backbone), samplers (@register_sampler), formulations "
       "(@register_formulation) or heatmap decoders (@register_decoder). Stored in checkpoints and imported again by "
       "evaluation.",
       path=True, evaluation="plug-in location (the same code, moved)",
       resume="plug-in location (the same code, moved)"),
    _o("timm_model", STR, None, GAZE,
       "gaze_backbone timm: the timm model name (e.g. vit_base_patch14_reg4_dinov2, resnet50, convnext_tiny).",
       nullable=True, read_with=TIMM_ONLY),
    _o("head_position", STR, "prompt", GAZE,
       "gaze_backbone timm: how the head position enters: prompt = Gaze-LLE's learned head-prompt embedding added to "
       "the tokens inside the head box (the encoder sees RGB only); mask_channel = the head mask as a 4th input "
       "channel of the encoder (this project's ResNets' way).", choices=("prompt", "mask_channel"),
       read_with=TIMM_ONLY, needs=Rule(Not(On("freeze_scene")), HEAD_MASK_FROZEN, when=("mask_channel",))),
    _o("timm_prefix_tokens", STR, "drop", GAZE,
       "gaze_backbone timm with a transformer: the class and register tokens before the patch tokens are dropped, or "
       "kept as extra conditioning tokens (projected, each with a learned position).", choices=("drop", "keep"),
       read_with=TIMM_ONLY),
    _o("face_stream", BOOL, False, GAZE,
       "gaze_backbone timm: add a face stream (the same timm model on the face crop) whose tokens join the "
       "conditioning. The ResNet backbones' face stream is head_flag.", read_with=TIMM_ONLY),
    _o("backbone_pretrained", BOOL, False, GAZE,
       "gaze_backbone timm: start the encoder(s) from timm's pretrained weights (downloaded by timm on first use).",
       read_with=TIMM_ONLY),
    _o("backbone_weights", STR, None, GAZE,
       "gaze_backbone timm: start the encoder(s) from this local .safetensors / .pth file (timm naming); missing "
       "and unexpected keys are reported.", nullable=True,
       path=True, read_with=TIMM_ONLY,
       needs=Rule(Not(On("backbone_pretrained")), "both give the encoder's starting weights: choose one")),
    _o("feature_cache", STR, None, GAZE,
       "Folder caching the frozen scene encoder's tokens per image (and flip), so later epochs read them instead of "
       "running the encoder; needs gaze_backbone timm (or a plug-in with encode_scene), freeze_scene and "
       "head_position prompt, and no pixel-changing train_augmentations (crop, colour).", nullable=True,
       path=True, needs=FEATURE_CACHE_RULES, evaluation="training only",
       resume="cache folder (cached tokens equal the frozen encoder's)"),
    _o("feature_cache_dtype", STR, "float32", GAZE,
       "Precision of the cached tokens: float32 (the encoder's values exactly) or float16 / bfloat16 (half the disk).",
       choices=("float32", "float16", "bfloat16"), read_with=Given("feature_cache"), evaluation="training only"),
    _o("list_resnet_scene_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the scene ResNet.",
       bounds=POSITIVE, read_with=RESNET_ONLY),
    _o("list_resnet_face_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the face ResNet.",
       bounds=POSITIVE, read_with=RESNET_ONLY),
    _o("resnet_scene_inplanes", INT, 64, GAZE, "Stem width of the scene ResNet.",
       bounds=POSITIVE, read_with=RESNET_ONLY),
    _o("resnet_face_inplanes", INT, 64, GAZE, "Stem width of the face ResNet.", bounds=POSITIVE, read_with=RESNET_ONLY),
    _o("adm_attention_module", BOOL, False, GAZE,
       "Re-weight the scene map with Chong et al.'s head-conditioned attention before building the conditioning.",
       read_with=RESNET_ONLY),
    _o("head_flag", BOOL, True, GAZE, "Use the head (mask and face stream); false = scene-only backbone.",
       read_with=RESNET_ONLY),
    _o("freeze_scene", BOOL, False, GAZE,
       "Freeze the scene stream (ResNet or timm encoder): no gradients, eval mode (BatchNorm statistics, dropout)."),
    _o("freeze_face", BOOL, False, GAZE,
       "Freeze the face stream (ResNet or timm encoder): no gradients, eval mode (BatchNorm statistics, dropout)."),
    _o("depth_flag", BOOL, False, GAZE,
       "Read precomputed depth maps and add a depth ResNet stream (how it joins: gaze_backbone).",
       read_with=RESNET_ONLY),
    _o("list_resnet_depth_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the depth ResNet.",
       bounds=POSITIVE, read_with=READS_DEPTH_RESNET),
    _o("resnet_depth_inplanes", INT, 64, GAZE, "Stem width of the depth ResNet.",
       bounds=POSITIVE, read_with=READS_DEPTH_RESNET),
    # --- UNet ----------------------------------------------------------------------------------------------------
    _o("unet_inout_channels", INT, 1, UNET,
       "UNet input and output channels (output doubled with adm_learn_sigma): 1, the heatmap's.",
       choices=(1,)),
    _o("unet_inplanes", INT, 8, UNET, "UNet model_channels (time-embedding width is 4x).", bounds=POSITIVE),
    _o("unet_residual", INT, 1, UNET, "Residual blocks per UNet level.", bounds=POSITIVE),
    _o("list_unet_inplanes_multipliers", INT_LIST, [1, 2, 3, 4], UNET, "channel_mult of each UNet level.",
       bounds=POSITIVE),
    _o("list_unet_attention_levels", INT_LIST, [2, 4, 8], UNET,
       "Downsample factors at which a SpatialTransformer follows each residual block (2 = 32x32 of a 64x64 map).",
       bounds=POSITIVE),
    _o("unet_spatial_tf_heads", INT, 4, UNET, "Attention heads of each SpatialTransformer.", bounds=POSITIVE),
    _o("unet_spatial_tf_layers", INT, 1, UNET, "Transformer blocks per SpatialTransformer.", bounds=POSITIVE),
    _o("unet_context_vector", INT, 1024, UNET, "Width of the conditioning tokens the UNet cross-attends to.",
       bounds=POSITIVE),
    _o("unet_dropout", FLOAT, 0.0, UNET, "Dropout inside the UNet residual blocks.", bounds=BELOW_ONE),
    _o("use_scale_shift_norm", BOOL, True, UNET, "FiLM-style time conditioning in residual blocks (ADM)."),
    _o("conv_resample", BOOL, True, UNET, "Learned convolutions when up/down-sampling (ADM)."),
    _o("resblock_updown", BOOL, False, UNET, "Residual blocks for up/down-sampling (ADM)."),
    _o("heatmap_decoder", STR, "diffusion", UNET,
       "Registered heatmap decoder (models/decoders.py): diffusion = the UNet denoiser sampled by the diffusion "
       "formulation diffusion_target selects (the original's model); unet_direct = the same UNet called once as a "
       "regressor (all-zero input at t = 0), trained on the target heatmap with direct_loss, no sampler; "
       "unet_direct_sigmoid = unet_direct with a sigmoid output (a per-cell probability, for direct_loss bce); or a "
       "name registered by backbone_plugins.", choices=registered("decoder_choices")),
    _o("concat_scene", BOOL, False, UNET,
       "Also feed the UNet the scene image and head mask resized to the heatmap grid, as 4 extra input channels "
       "(concat conditioning of image-to-image diffusion), so it sees where objects and the head are. Not in the "
       "original system, which conditions through cross-attention only."),
    # --- diffusion process ---------------------------------------------------------------------------------------
    _o("diffusion_target", STR, "heatmap", DIFF,
       "What is diffused. heatmap: the target heatmap (branch main of the original). point: the 2-D gaze point (the "
       "original's branches point_image_diffusion / PointLoss): the noisy point (scaled by diff_normalization, "
       "std-normalised with norm_std_flag, clamped) is rendered as a Gaussian heatmap of sigma random_sigma, which the "
       "UNet sees; it predicts the clean heatmap (x0 prediction, fixed variance, MSE only); sampling is DDIM on the "
       "point with the predicted heatmap's argmax as its x0. point_image: the earlier branch point_image_diffusion: "
       "as point, but the rendered heatmap is scaled to [-0.1, 0.1], noised again to the same t and std-normalised "
       "(norm_std_flag) before the UNet; sampling is heatmap sampling with the state std-normalised every step. "
       "Or a formulation registered by backbone_plugins (docs/formulations.md). Read by the diffusion decoder only.",
       choices=registered("diffusion_targets")),
    _o("train_time_steps", INT, 1000, DIFF, "T, the number of diffusion steps in training.", bounds=POSITIVE),
    _o("sample_time_steps", INT, 50, DIFF,
       "Sampling steps S on guided-diffusion's evenly spaced grid (respacing string \"S\", t = 0 and T-1 included; "
       "S = 1 is the single step from t = T-1).", bounds=Bounds(1, "train_time_steps"), evaluation="sampler"),
    _o("sampler", STR, "auto", DIFF,
       "Sampler over the S-step grid: auto = the original's rule (DDIM when S < T, ancestral DDPM when S = T); ddim; "
       "ddpm; dpm++2m = DPM-Solver++(2M), deterministic, one network call per step; or a sampler registered with "
       "@register_sampler by backbone_plugins. diffusion_target point samples with DDIM only (auto or ddim); a direct "
       "heatmap_decoder with none (auto).",
       choices=registered("sampler_choices"), evaluation="sampler"),
    _o("ddim_eta", FLOAT, 0.0, DIFF, "DDIM noise scale eta in [0, 1]: 0 = deterministic, 1 = ancestral variance (DDIM only).",
       bounds=UNIT_INTERVAL, evaluation="sampler",
       needs=Rule(DDIM_SAMPLING, "it is DDIM's noise scale, and the configured sampler does not sample with DDIM")),
    _o("sample_k", INT, 1, DIFF,
       "Heatmaps sampled per input and averaged (one batched UNet call per step; the conditioning is computed once).",
       bounds=POSITIVE, evaluation="sampler"),
    _o("schedule_type", STR, "linear", DIFF, "Noise schedule.", choices=("linear", "cosine")),
    _o("factor_multiplier", FLOAT, 1.0, DIFF, "Multiplies every beta of the schedule (clipped to 0.999); 1 = as published.",
       bounds=POSITIVE),
    _o("adm", BOOL, True, DIFF,
       "Use the ADM formulation configured by the adm_* options; false = the simple formulation set by predict_sthg."),
    _o("predict_sthg", STR, "pred_noise", DIFF, "Target of the simple formulation (fixed variance, MSE).",
       choices=("pred_noise", "pred_x0"),
       read_with=Rule(Not(ADM), "the target of the simple formulation (adm false); the ADM formulation's is set by "
                                "adm_predict_xstart / adm_predict_v")),
    _o("adm_predict_xstart", BOOL, True, DIFF, "ADM: the network predicts x0 (else eps).", needs=ADM_ONLY),
    _o("adm_predict_v", BOOL, False, DIFF, "ADM: the network predicts v = sqrt(abar) eps - sqrt(1 - abar) x0.",
       needs=(ADM_ONLY, Rule(Not(On("adm_predict_xstart")),
                             "adm_predict_xstart and adm_predict_v are both true: choose one target"))),
    _o("adm_learn_sigma", BOOL, False, DIFF, "ADM: learned-range variance (UNet output channels x2), VB loss term.",
       needs=ADM_ONLY),
    _o("adm_use_kl", BOOL, False, DIFF, "ADM: train on the variational bound (RESCALED_KL).", needs=ADM_ONLY),
    _o("adm_rescale_learned_sigmas", BOOL, False, DIFF,
       "ADM: hybrid loss MSE + VB * T/1000 (RESCALED_MSE); needs adm_learn_sigma (without it there is no VB term).",
       needs=(ADM_ONLY, Rule(All(On("adm_learn_sigma"), Not(On("adm_use_kl"))),
                             "it scales the VB term of a learned variance in the hybrid loss"))),
    _o("adm_rescale_timesteps", BOOL, False, DIFF, "ADM: the network sees t * 1000 / T.", needs=ADM_ONLY),
    _o("adm_sigma_small", BOOL, False, DIFF,
       "ADM with fixed variance: the posterior variance beta~_t (fixed small) instead of beta_t (fixed large, "
       "guided-diffusion's default). Read by ancestral (DDPM) sampling and the VB loss (adm_use_kl) only; not with "
       "adm_learn_sigma.",
       needs=(ADM_ONLY, Rule(Not(On("adm_learn_sigma")), "it picks a fixed variance, but adm_learn_sigma learns it"),
              Rule(AnyOf(On("adm_use_kl"), ANCESTRAL_SAMPLING),
                   "the fixed variance is read only by ancestral (DDPM) sampling and the VB loss"))),
    _o("diff_normalization", FLOAT, 3.0, DIFF,
       "v: a heatmap h in [0, 1] is diffused as x0 = 2 v h - v (SNR grows by v^2); predictions map back by (x + v)/(2 v).",
       bounds=POSITIVE),
    _o("norm_std_flag", BOOL, True, DIFF, "Divide x_t by its per-sample standard deviation before the UNet."),
    _o("clip_denoised", BOOL, False, DIFF, "Clamp the predicted x0 to the data range [-v, v] while sampling.",
       evaluation="sampler"),
    _o("offset_noise_strength", FLOAT, 0.1, DIFF, "Offset-noise strength s (only with noise_changer).",
       bounds=NON_NEGATIVE, read_with=On("noise_changer")),
    _o("noise_changer", BOOL, False, DIFF,
       "Train with offset noise eps + s * delta, one delta ~ N(0, 1) per sample and channel (s = offset_noise_strength)."),
    _o("fix_snr", BOOL, False, DIFF,
       "Rescale the schedule to zero terminal SNR (Lin et al. 2024; diffusers' rescale_betas_zero_snr); needs x0 or v "
       "prediction, and sampling starts from pure noise at t = T-1 (which the S-step grid includes).",
       needs=Rule(Not(PREDICTS_EPS), "zero terminal SNR makes abar = 0 at t = T-1, where an eps prediction cannot give "
                                     "x0; predict x0 or v ('adm_predict_xstart' / 'adm_predict_v', or 'predict_sthg' "
                                     "= 'pred_x0')")),
    _o("eval_from_picture", BOOL, False, DIFF,
       "SDEdit evaluation: start the reverse process at the last grid step <= time_noise from the picture_source "
       "heatmap noised to that step, instead of pure noise at T-1.", evaluation="sampler"),
    _o("time_noise", INT, 500, DIFF, "t0 (a training timestep in [0, T)) for eval_from_picture.",
       bounds=Bounds(0, "train_time_steps", high_open=True), read_with=On("eval_from_picture"), evaluation="sampler"),
    _o("picture_source", STR, "centre_prior", DIFF,
       "Starting heatmap of eval_from_picture: centre_prior (the dataset-free centre Gaussian of the baseline) or "
       "ground_truth (the test target: a diagnostic only, metrics.json says so).",
       choices=("centre_prior", "ground_truth"), read_with=On("eval_from_picture"), evaluation="sampler"),
    _o("compat_original_ddim_step", BOOL, False, DIFF,
       "Compatibility with the original code, for comparing with its numbers: each DDIM step lands on abar(t-1) of "
       "the full schedule instead of abar of the next grid point (original_system.md section 3, item 1). DDIM only.",
       needs=Rule(DDIM_SAMPLING, "it changes the DDIM step, and the configured sampler does not sample with DDIM"),
       evaluation="sampler"),
    _o("compat_original_std_state", BOOL, False, DIFF,
       "Compatibility with the original code: with norm_std_flag, sampling divides the state x_t itself by its std at "
       "every step, not only the UNet input (original_system.md section 3, item 2).",
       needs=Rule(On("norm_std_flag"), "it reproduces a behaviour of norm_std_flag, which is off"),
       evaluation="sampler"),
    # --- losses --------------------------------------------------------------------------------------------------
    _o("diffusion_weight", FLOAT, 1e5, LOSS, "Weight of the diffusion loss (YAML also accepts the original `diffuion_weight`).",
       aliases=("diffuion_weight",), bounds=NON_NEGATIVE),
    _o("inout_weight", FLOAT, 100.0, LOSS, "Weight of the in/out BCE loss.",
       bounds=NON_NEGATIVE, read_with=On("x_loss")),
    _o("x_loss", BOOL, True, LOSS, "Add the in/out BCE loss."),
    _o("direct_loss", STR, "mse", LOSS,
       "Loss of a direct heatmap_decoder on the in-frame samples' target heatmap (the per-cell mean): mse on the map "
       "(as Chong et al.), or bce on the logits of a sigmoid decoder (as Gaze-LLE).", choices=("mse", "bce")),
    _o("direct_loss_weight", FLOAT, 1.0, LOSS,
       "Weight of direct_loss in the total (its diffusion counterpart is diffusion_weight).", bounds=NON_NEGATIVE),
    _o("mse_loss_weight_type", STR, "constant", LOSS,
       "Per-timestep weight of the MSE: constant, min_snr_K (Min-SNR-gamma, e.g. min_snr_5), max_snr_K, trunc_snr, snr, "
       "inv_snr; defined as min(SNR, K), max(SNR, K), max(SNR, 1), SNR, 1/SNR on the x0 error, divided by SNR for eps "
       "and by SNR + 1 for v targets; 1 where SNR = 0.",
       check=parse_mse_loss_weight_type,
       needs=Rule(Not(All(On("adm"), On("adm_use_kl"))),
                  "it weights the MSE, but adm_use_kl trains on the variational bound only (no MSE term)")),
    _o("extra_loss", STR, "none", LOSS,
       "Extra heatmap term on the network's prediction (docs/losses.md): location = squared distance (grid cells) "
       "between the soft argmax of the predicted x0 and the gaze point, x location_weight; cross_entropy = the "
       "target heatmap's cross-entropy with softmax(softargmax_beta * predicted x0), x location_weight; kl = "
       "KL(pred || target) of the softmaxed [0, 1] maps, x kl_weight (in-frame rows, mean over rows); "
       "location_original / kl_original = the DiffusionGaze code's terms as it computed them (every row, its "
       "units and reductions). The old switches other_loss / kl_div_loss / location_loss are read as this option.",
       choices=EXTRA_LOSSES,
       needs=Rule(Not(All(On("adm"), On("adm_use_kl"))), "the original's terms read the network's output, which "
                  "adm_use_kl (the variational bound alone) does not train; the original's code had no such output "
                  "either", when=ORIGINAL_EXTRA_LOSSES)),
    _o("out_of_frame_diffusion_loss", BOOL, False, LOSS,
       "Add the out-of-frame rows' diffusion loss (against their empty target heatmap) to the sum that is divided by "
       "the in-frame count, as the July 2023 DiffusionGaze code did (configs/thesis/readme_2023); off = the "
       "diffusion loss is the mean over in-frame rows."),
    _o("location_weight", FLOAT, 1e4, LOSS,
       "Weight of extra_loss location, cross_entropy and location_original.", bounds=NON_NEGATIVE),
    _o("kl_weight", FLOAT, 10.0, LOSS, "Weight of extra_loss kl and kl_original.", bounds=NON_NEGATIVE),
    _o("softargmax_beta", FLOAT, 100.0, LOSS,
       "Sharpness beta of softmax(beta * prediction) in extra_loss location, cross_entropy and location_original.",
       bounds=POSITIVE),
    # --- training ------------------------------------------------------------------------------------------------
    _o("lr", FLOAT, 2.5e-4, TRAIN, "Learning rate of both parameter groups (see lr_gaze).",
       bounds=NON_NEGATIVE,
       needs=Rule(AnyOf(Given("eval_weights"), Check("'lr_gaze' > 0", ("lr_gaze",), lambda c: (c.lr_gaze or 0) > 0)),
                  LR_ZERO, when=(0.0,), warning=True)),
    _o("lr_gaze", FLOAT, None, TRAIN,
       "Learning rate of the gaze backbone and in/out head group; unset = lr. Both groups follow one schedule.",
       nullable=True, bounds=NON_NEGATIVE),
    _o("weight_decay", FLOAT, 0.0, TRAIN,
       "Weight decay: AdamW's decoupled decay (w <- w - lr * weight_decay * w), or with coupled_weight_decay the "
       "original's Adam L2 term added to the gradient.", bounds=NON_NEGATIVE),
    _o("coupled_weight_decay", BOOL, False, TRAIN,
       "Use Adam with weight_decay as a coupled L2 penalty on the gradient (the original's optimizer) instead of "
       "AdamW.",
       read_with=Rule(Check("'weight_decay' > 0", ("weight_decay",), lambda c: c.weight_decay > 0),
                      "Adam and AdamW differ only in how weight decay is applied")),
    _o("epochs", INT, 60, TRAIN, "Number of training epochs.",
       bounds=POSITIVE, resume="length of the run (extend it)",
       resume_unless=Unless(Is("lr_schedule", "warmup_cosine", "warmup_constant"),
                            "it spreads the learning-rate schedule over the run's epochs, and the steps done followed "
                            "that schedule; resume with the same epochs, or start a new run")),
    _o("lr_schedule", STR, "constant", TRAIN,
       "Learning-rate schedule, per iteration: constant; warmup_cosine = linear warm-up over 10 % of the steps, then "
       "cosine to 0 (the original's lr_schedular); warmup_constant = the same warm-up, then constant (its "
       "warmup_linear); linear_anneal = guided-diffusion's linear decay to 0 over lr_anneal_steps steps, then stop.",
       choices=("constant", "warmup_cosine", "warmup_constant", "linear_anneal"),
       needs=Rule(Check("'lr_anneal_steps' > 0", ("lr_anneal_steps",), lambda c: c.lr_anneal_steps > 0),
                  "the schedule decays the rate to 0 over lr_anneal_steps steps", when=("linear_anneal",))),
    _o("lr_anneal_steps", INT, 0, TRAIN,
       "Steps of lr_schedule linear_anneal (the rate reaches 0 and training stops); given alone (lr_schedule left "
       "unset), N > 0 selects linear_anneal, as in guided-diffusion.",
       bounds=NON_NEGATIVE,
       read_with=Rule(Is("lr_schedule", "linear_anneal"),
                      "it is the length of the linear_anneal schedule (choose one schedule)")),
    _o("grad_clip", FLOAT, 1.0, TRAIN, "Max global gradient norm (0 = no clipping).", bounds=NON_NEGATIVE),
    _o("amp", STR, "off", TRAIN,
       "Mixed precision (apex levels mapped onto torch.autocast): off/O0 = fp32; O1, O2, O3, fp16 = autocast "
       "float16 with a GradScaler; bf16 = autocast bfloat16 without a scaler.",
       choices=("off", "O0", "O1", "O2", "O3", "fp16", "bf16"), nullable=True, evaluation="execution"),
    _o("channels_last", BOOL, False, TRAIN, "Use the channels-last memory format for the model and inputs.",
       evaluation="execution"),
    _o("sync_batchnorm", BOOL, False, TRAIN,
       "Under torchrun on CUDA: synchronise BatchNorm statistics across processes (SyncBatchNorm).",
       needs=Rule(Is("device", "cuda"), "SyncBatchNorm has no CPU backend"), evaluation="execution"),
    _o("torch_compile", BOOL, False, TRAIN,
       "Compile the UNet and the gaze backbone with torch.compile (parameter names and checkpoints unchanged); the "
       "first steps are slow while it compiles.", evaluation="execution"),
    _o("ema_on", BOOL, False, TRAIN,
       "Keep an exponential moving average of the parameters and BatchNorm statistics (saved in checkpoints) and "
       "evaluate with it; metrics.json names the evaluated weights.", evaluation="weights (the EMA or the raw model)"),
    _o("ema_rate", FLOAT, 0.9999, TRAIN, "EMA decay rate: ema <- rate * ema + (1 - rate) * weights after each step.",
       bounds=BELOW_ONE, read_with=On("ema_on")),
    _o("evaluate_every", INT, 5, TRAIN, "Evaluate every N epochs (and after the last).",
       bounds=POSITIVE, resume="evaluation cadence"),
    _o("save_every", INT, 5, TRAIN, "Keep a numbered checkpoint every N epochs (the latest is always kept).",
       bounds=POSITIVE, resume="saving cadence"),
    _o("save_every_steps", INT, 0, TRAIN,
       "Also write the resumable last.pt every N optimisation steps inside an epoch, so a crash loses at most N steps "
       "(0 = at the end of each epoch only).", bounds=NON_NEGATIVE, resume="saving cadence"),
    # --- evaluation ----------------------------------------------------------------------------------------------
    _o("eval_batch_size", INT, None, EVAL, "Batch size for evaluation; unset = batch_size.", nullable=True,
       bounds=POSITIVE, evaluation="evaluation batch", resume="evaluation batch"),
    _o("eval_dataset", STR, None, EVAL,
       "Dataset whose test split is evaluated, with its own protocol (unset = source_dataset): cross-dataset "
       "evaluation, in a training run or with eval_weights.",
       choices=("gazefollow", "videoattentiontarget", "goo"), nullable=True,
       evaluation="test data",
       needs=Rule(AnyOf(Check("'eval_dataset' = 'source_dataset'", ("source_dataset",),
                              lambda c: c.eval_dataset == c.source_dataset), Given("eval_dataset_dir")),
                  "it differs from source_dataset: set 'eval_dataset_dir' to the folder of that dataset")),
    _o("eval_dataset_dir", STR, None, EVAL,
       "Root folder of eval_dataset (unset = source_dataset_dir; required when eval_dataset differs).",
       nullable=True, path=True, evaluation="test data", resume="data location (the same data, moved)"),
    _o("Debugging_maps", BOOL, False, EVAL,
       "Write evaluation figures (always done with eval_weights): best, median and worst samples by L2 and "
       "denoising trajectories, into <run>/figures/.", evaluation="figures", resume="figures"),
    _o("debug_maps_per_group", INT, 4, EVAL, "Samples drawn per group (best, median, worst by L2) in the figures.",
       bounds=NON_NEGATIVE, evaluation="figures", resume="figures"),
    _o("debug_trajectories", INT, 3, EVAL,
       "Samples whose denoising trajectory (the predicted heatmap at several sampling steps) is drawn.",
       bounds=NON_NEGATIVE, evaluation="figures", resume="figures"),
    _o("eval_metric_workers", INT, 0, EVAL,
       "Processes computing the per-sample metrics while the model predicts (0 = in the main process).",
       bounds=NON_NEGATIVE, evaluation="execution", resume="workers"),
    # --- logging -------------------------------------------------------------------------------------------------
    *logging_options(print_every=10, group=LOG),
)

# Old spellings of `extra_loss`, accepted in YAML files, on the command line and in stored configurations (part of
# engine.old_spellings.OLD_SPELLINGS) and translated where they enter by engine.original_layout (their meaning
# depends on the files' layout); never options of a configuration.
LEGACY_OPTIONS: tuple[Option, ...] = (
    _o("other_loss", BOOL, False, LOSS,
       "Old switch, read as extra_loss: location (with kl_div_loss: kl; with location_loss cross_entropy: "
       "cross_entropy); with DiffusionGaze-layout files, the original's terms (location_original / kl_original).", replaced_by="extra_loss"),
    _o("kl_div_loss", BOOL, False, LOSS, "Old switch, with other_loss: read as extra_loss kl (or kl_original).",
       replaced_by="extra_loss"),
    _o("location_loss", STR, "softargmax", LOSS, "Old option, with other_loss: cross_entropy = extra_loss cross_entropy.",
       choices=("softargmax", "cross_entropy"), replaced_by="extra_loss"),
)

OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
ALIASES: dict[str, str] = {alias: o.name for o in OPTIONS for alias in o.aliases}
GROUPS: tuple[str, ...] = (RUN, DATA, GAZE, UNET, DIFF, LOSS, TRAIN, EVAL, LOG)


@dataclass(frozen=True)
class OptionTable:
    """One program's declared options and how its command line looks. engine.config resolves any table the same way
    (defaults < YAML < flags, same errors); `validate(config)` adds the program's cross-option checks.

    The gaze-following table is engine.config.GAZE_FOLLOWING (it needs engine.config.validate); Gaze360's is
    gaze360.options.GAZE360.
    """

    options: tuple[Option, ...]
    groups: tuple[str, ...]
    prog: str
    description: str
    yaml_flags: tuple[tuple[str, str], ...]  # (flag without dashes, help): the YAML files, merged in this order
    validate: Callable[[Any], None]
    # Command-line switches of an original program kept with their original meaning: (flag, option it sets, value of
    # the bare flag, help). E.g. the original's `--is_subsample_test_set` (store_false: given = the full test set).
    switches: tuple[tuple[str, str, Any, str], ...] = ()
    # Reads YAML files of an original program's layout with that program's meanings (engine.config); None = none.
    original_layout: Any = None
    # The original's spellings of options now holding one choice by name (engine.old_spellings): read from YAML
    # files, flags and stored configurations, and turned into the current options by `translate(values, sources,
    # stored)` before the checks.
    old_spellings: tuple[Option, ...] = ()
    translate: Callable[..., None] | None = None
    # Builds the program's model from a configuration (engine.config.check_buildable runs it on the meta device).
    build: Callable[[Any], Any] | None = None

    @property
    def by_name(self) -> dict[str, Option]:
        return {o.name: o for o in self.options}

    @property
    def readable(self) -> dict[str, Option]:
        """The current options and the old spellings: every key a file, a flag or a stored configuration may use."""
        return {**self.by_name, **{o.name: o for o in self.old_spellings}}

    @property
    def aliases(self) -> dict[str, str]:
        return {alias: o.name for o in self.options for alias in o.aliases}

    def evaluation_time(self) -> dict[str, str]:
        """{option: why it may differ} for evaluating stored weights (engine.stored_config)."""
        return {o.name: o.evaluation for o in self.options if o.evaluation}

    def resumable(self) -> dict[str, str]:
        """{option: why it may change} when a run resumes (engine.stored_config)."""
        return {o.name: o.resume for o in self.options if o.resume}


# --- the options reference (docs/options.md) --------------------------------------------------------------------------


def _kind_text(option: Option) -> str:
    choices = option.allowed()
    kind = "path" if option.path and option.kind == STR else option.kind
    if choices is not None:
        kind = " / ".join(map(str, choices))
    if option.kind == STR_LIST:
        kind = f"list of {kind if choices is not None else ('paths or modules' if option.path else 'str')}"
    return kind


def rules_text(option: Option) -> str:
    """The declared checks of `option` in words (the reference's "rules" column)."""
    parts = []
    if option.bounds is not None:
        parts.append(("each item " if option.kind == INT_LIST else "") + option.bounds.text())
    read_with = as_rule(option.read_with)
    if read_with is not None:
        parts.append(f"read only with {read_with.condition.text()}")
    for rule in rule_list(option.needs):
        when = "" if rule.when is None else ("" if rule.when == "always" else
                                            f"{' / '.join(map(str, rule.when))}: ")
        parts.append(f"{when}{'warns unless' if rule.warning else 'needs'} {rule.condition.text()}")
    if option.check is not None:
        parts.append("value checked by name")
    return "; ".join(parts)


def _changes_text(option: Option) -> str:
    parts = []
    if option.evaluation:
        parts.append(f"evaluation: {option.evaluation}")
    if option.resume:
        unless = f", not while {option.resume_unless.condition.text()}" if option.resume_unless else ""
        parts.append(f"resume: {option.resume}{unless}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "/")


def markdown_table(options: tuple[Option, ...] = OPTIONS, groups: tuple[str, ...] = GROUPS,
                   old_spellings: tuple[Option, ...] = ()) -> str:
    """The options as Markdown tables, one per group, with their rules and when they may differ from a checkpoint's
    configuration; then the old spellings. docs/options.md holds this text (a test checks)."""
    lines = []
    for group in groups:
        lines += [f"**{group}**", "", "| option | type | default | meaning | rules | may differ at |",
                  "|---|---|---|---|---|---|"]
        for option in options:
            if option.group == group:
                default = "unset" if option.default is None else option.default
                lines.append(f"| `{option.name}` | {_cell(_kind_text(option))} | `{default}` | {_cell(option.help)} | "
                             f"{_cell(rules_text(option))} | {_cell(_changes_text(option))} |")
        lines.append("")
    if old_spellings:
        lines += ["**The original's spellings** (accepted in YAML files, on the command line and in stored "
                  "configurations; translated into the options above, see docs/configuration.md)", "",
                  "| old key | type | now | meaning |", "|---|---|---|---|"]
        for option in old_spellings:
            lines.append(f"| `{option.name}` | {_cell(_kind_text(option))} | `{option.replaced_by}` | "
                         f"{_cell(option.help)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


OPTIONS_REFERENCE = "docs/options.md"
OPTIONS_START = "<!-- options:start (generated by python -m engine.options) -->\n"
OPTIONS_END = "<!-- options:end -->"


def rewrite_block(relative_path: str, text: str, start: str, end: str) -> None:
    """Replace the text of the project's file `relative_path` between the markers `start` (a whole line) and `end`."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative_path
    content = path.read_text()
    head, rest = content.split(start)
    path.write_text(head + start + text + end + rest.split(end)[1])


if __name__ == "__main__":  # `python -m engine.options` rewrites the gaze-following part of docs/options.md
    from engine.config import GAZE_FOLLOWING

    rewrite_block(OPTIONS_REFERENCE, markdown_table(GAZE_FOLLOWING.options, GAZE_FOLLOWING.groups,
                                                    GAZE_FOLLOWING.old_spellings), OPTIONS_START, OPTIONS_END)

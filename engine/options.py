"""Every option of the gaze-following diffusion framework, declared once: name, type, default, group and help.

The YAML loader, the command-line parser, `--help` and `--print_config` are all generated from `OPTIONS`.
Defaults reproduce the original DiffusionGaze final configuration (see README, "Options"), except where the
original had a defect (full test set by default; `gaze_point_threshold` is a fraction).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Value kinds understood by engine.config.convert_value.
INT, FLOAT, BOOL, STR, INT_LIST, FRACTION, RULES = "int", "float", "bool", "str", "int_list", "fraction", "rules"
STR_LIST = "str_list"  # a list of strings, possibly empty (YAML list, or space-separated words after the flag)

TRAIN_AUGMENTATIONS = ("jitter", "crop", "flip", "colour")  # datasets.transforms.sample_augmentation's steps
# Values of `extra_loss` (engine.losses computes them; docs/losses.md says which is which and why).
EXTRA_LOSSES = ("none", "location", "cross_entropy", "kl", "location_original", "kl_original")
ORIGINAL_EXTRA_LOSSES = ("location_original", "kl_original")  # the DiffusionGaze code's terms, as it computed them


@dataclass(frozen=True)
class Option:
    name: str
    kind: str
    default: Any
    group: str
    help: str
    choices: tuple | None = None
    nullable: bool = False  # None (YAML `null`, or empty) is a valid value
    aliases: tuple[str, ...] = field(default_factory=tuple)  # other accepted YAML spellings


def _o(name, kind, default, group, help, **kw) -> Option:
    return Option(name, kind, default, group, help, **kw)


RUN, DATA, GAZE, UNET, DIFF, LOSS, TRAIN, EVAL, LOG = (
    "Run", "Data", "Gaze backbone", "Diffusion UNet", "Diffusion process", "Losses", "Training", "Evaluation",
    "Logging",
)

OPTIONS: tuple[Option, ...] = (
    # --- run -----------------------------------------------------------------------------------------------------
    _o("tag", STR, "default", RUN, "Name of the run: outputs go to <output_dir>/<tag>."),
    _o("device", STR, "cuda", RUN, "Device to run on; an unavailable device is an error.", choices=("cpu", "cuda", "mps")),
    _o("output_dir", STR, "output", RUN, "Folder that holds one sub-folder per run tag."),
    _o("seed", INT, 0, RUN, "Seed of every random generator (torch, numpy, python, augmentations, sampling noise)."),
    _o("no_resume", BOOL, False, RUN, "Start afresh even if <output_dir>/<tag> holds a checkpoint."),
    _o("no_save", BOOL, False, RUN, "Keep only the latest checkpoint (enough to resume), not one every save_every."),
    _o("init_weights", STR, None, RUN, "Weights to initialise from (renamed with init_weights_scheme).", nullable=True),
    _o("init_weights_scheme", STR, "auto", RUN,
       "Key naming of init_weights and eval_weights: auto-detected, or one of the built-in schemes.",
       choices=("auto", "project", "chong", "tonini", "diffusiongaze")),
    _o("init_weights_rules", RULES, None, RUN,
       "Extra renaming rules for init_weights and eval_weights, YAML only: a list of [regex, replacement] pairs "
       "applied first (alone when auto-detection finds no known naming).",
       nullable=True),
    _o("eval_weights", STR, None, RUN,
       "If set, only evaluate these weights (no training): a checkpoint in any supported naming scheme or a "
       ".safetensors export, renamed with init_weights_scheme / init_weights_rules; with ema_on, the file's EMA "
       "weights (see original_ema_mix).", nullable=True),
    _o("original_ema_mix", BOOL, True, RUN,
       "eval_weights with ema_on on a checkpoint of the original DiffusionGaze code: evaluate as the original did, "
       "the gaze backbone's own (non-averaged) weights with the averaged UNet and in/out head; false = every weight "
       "averaged. metrics.json names the weights evaluated."),
    _o("trust_legacy_checkpoint", BOOL, False, RUN,
       "Allow init_weights / eval_weights files that need full (unsafe) unpickling, e.g. the original DiffusionGaze "
       "checkpoints; only for files you trust. Without it such files are refused."),
    # --- data ----------------------------------------------------------------------------------------------------
    _o("source_dataset", STR, "gazefollow", DATA, "Dataset to train and evaluate on.",
       choices=("gazefollow", "videoattentiontarget", "goo")),
    _o("source_dataset_dir", STR, "data/gazefollow_synthetic", DATA,
       "Root folder of the dataset (default: the built-in synthetic GazeFollow, see `make data`)."),
    _o("input_size", INT, 224, DATA, "Side of the scene and face inputs in pixels."),
    _o("output_size", INT, 64, DATA, "Side of the heatmap the diffusion model denoises."),
    _o("batch_size", INT, 16, DATA, "Images per optimisation step (per process)."),
    _o("num_workers", INT, 8, DATA,
       "DataLoader worker processes (0 = load in the main process); training workers persist across epochs."),
    _o("gaze_point_threshold", FLOAT, 0.0, DATA,
       "Fraction in [0, 1): drop test annotator points farther from the group mean than this quantile of their "
       "distances (0 = keep all). The original declared it int but used it as a fraction."),
    _o("test_subsample_fraction", FRACTION, 0.0, DATA,
       "Evaluate on a seeded per-person fraction of the test set (0 or 1 = the full set, the default). The "
       "original's is_subsample_test_set is accepted: in YAML true = 0.1 (its 10 %), false = 0; on the command line "
       "a bare --is_subsample_test_set = the full test set, as in the original.",
       aliases=("is_subsample_test_set",)),
    _o("train_in_frame_only", BOOL, False, DATA,
       "Drop the out-of-frame samples from the training set (what the original did whenever x_loss was off; a "
       "DiffusionGaze-layout file with x_loss off gets it)."),
    _o("random_flag", BOOL, False, DATA,
       "Draw each training heatmap with a random integer sigma in [7, 10] (the original's choice) instead of random_sigma."),
    _o("random_sigma", FLOAT, 3.0, DATA, "Sigma of the Gaussian target heatmap in output cells (3 = the benchmarks)."),
    _o("vat_smooth_head_boxes", BOOL, True, DATA,
       "VideoAttentionTarget: replace each head box by the 11-frame centred moving average of its person track "
       "(the reference does this in training and test)."),
    _o("vat_frame_step", INT, 1, DATA,
       "VideoAttentionTarget training: use every k-th frame of each person track (1 = all); evaluation always uses "
       "every frame."),
    _o("train_augmentations", STR_LIST, list(TRAIN_AUGMENTATIONS), DATA,
       "Training augmentations applied (each with probability 0.5): jitter (head box enlarged), crop, flip, colour; "
       "an empty list trains on the plain images. Draws are the same whichever are on.",
       choices=TRAIN_AUGMENTATIONS),
    _o("goo_variant", STR, "real", DATA, "GOO: which release source_dataset_dir holds (selects the pickle files).",
       choices=("real", "synth")),
    _o("invalid_annotations", STR, "error", DATA,
       "An annotation row with an impossible value (NaN / inf, a head box with no area, an eye or in-frame gaze point "
       "outside the image): stop with an error naming file and line, or leave such rows out (counted, listed in the "
       "run folder's data_validation.csv).", choices=("error", "skip")),
    _o("skip_validation", BOOL, False, DATA,
       "Do not read every image header again before training when these annotation files (same paths, sizes and "
       "modification times) were validated before (cached in <output_dir>/.data_validation); without such a "
       "result the data is validated anyway."),
    # --- gaze backbone -------------------------------------------------------------------------------------------
    _o("gaze_backbone", STR, "original", GAZE,
       "Registered gaze backbone: original (DiffusionGaze's ResNets), chong (Chong et al.'s layout; also chosen by "
       "attention_layout), diffusiongaze_depth (also chosen by depth_layout diffusiongaze), timm (any timm model, see "
       "timm_model), or a name registered by backbone_plugins."),
    _o("backbone_plugins", STR_LIST, [], GAZE,
       "Python modules (importable names or .py paths) imported before the model is built; they register gaze "
       "backbones with @register_backbone. Stored in checkpoints and imported again by evaluation."),
    _o("timm_model", STR, None, GAZE,
       "gaze_backbone timm: the timm model name (e.g. vit_base_patch14_reg4_dinov2, resnet50, convnext_tiny).",
       nullable=True),
    _o("head_position", STR, "prompt", GAZE,
       "gaze_backbone timm: how the head position enters: prompt = Gaze-LLE's learned head-prompt embedding added to "
       "the tokens inside the head box (the encoder sees RGB only); mask_channel = the head mask as a 4th input "
       "channel of the encoder (this project's ResNets' way).", choices=("prompt", "mask_channel")),
    _o("timm_prefix_tokens", STR, "drop", GAZE,
       "gaze_backbone timm with a transformer: the class and register tokens before the patch tokens are dropped, or "
       "kept as extra conditioning tokens (projected, each with a learned position).", choices=("drop", "keep")),
    _o("face_stream", BOOL, False, GAZE,
       "gaze_backbone timm: add a face stream (the same timm model on the face crop) whose tokens join the "
       "conditioning. The ResNet backbones' face stream is head_flag."),
    _o("backbone_pretrained", BOOL, False, GAZE,
       "gaze_backbone timm: start the encoder(s) from timm's pretrained weights (downloaded by timm on first use)."),
    _o("backbone_weights", STR, None, GAZE,
       "gaze_backbone timm: start the encoder(s) from this local .safetensors / .pth file (timm naming); missing "
       "and unexpected keys are reported.", nullable=True),
    _o("feature_cache", STR, None, GAZE,
       "Folder caching the frozen scene encoder's tokens per image (and flip), so later epochs read them instead of "
       "running the encoder; needs gaze_backbone timm (or a plug-in with encode_scene), freeze_scene and "
       "head_position prompt, and no pixel-changing train_augmentations (crop, colour).", nullable=True),
    _o("feature_cache_dtype", STR, "float32", GAZE,
       "Precision of the cached tokens: float32 (the encoder's values exactly) or float16 / bfloat16 (half the disk).",
       choices=("float32", "float16", "bfloat16")),
    _o("list_resnet_scene_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the scene ResNet."),
    _o("list_resnet_face_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the face ResNet."),
    _o("resnet_scene_inplanes", INT, 64, GAZE, "Stem width of the scene ResNet."),
    _o("resnet_face_inplanes", INT, 64, GAZE, "Stem width of the face ResNet."),
    _o("adm_attention_module", BOOL, False, GAZE,
       "Re-weight the scene map with Chong et al.'s head-conditioned attention before building the conditioning."),
    _o("attention_layout", BOOL, False, GAZE,
       "Use Chong et al.'s layout: attended scene + face pass through the 2048->1024->512 encoder, whose map is the "
       "conditioning (unet_context_vector must be 512)."),
    _o("head_flag", BOOL, True, GAZE, "Use the head (mask and face stream); false = scene-only backbone."),
    _o("freeze_scene", BOOL, False, GAZE,
       "Freeze the scene stream (ResNet or timm encoder): no gradients, eval mode (BatchNorm statistics, dropout)."),
    _o("freeze_face", BOOL, False, GAZE,
       "Freeze the face stream (ResNet or timm encoder): no gradients, eval mode (BatchNorm statistics, dropout)."),
    _o("depth_flag", BOOL, False, GAZE, "Add a depth ResNet stream on precomputed depth maps."),
    _o("list_resnet_depth_layers", INT_LIST, [3, 4, 6, 3, 2], GAZE, "Bottleneck blocks per layer of the depth ResNet."),
    _o("resnet_depth_inplanes", INT, 64, GAZE, "Stem width of the depth ResNet."),
    _o("depth_layout", STR, "diffusiongaze", GAZE,
       "With depth_flag: how the depth stream enters. diffusiongaze = the original DiffusionGaze depth model (gaze "
       "backbone 'diffusiongaze_depth': encoded scene+face and depth+face maps as tokens, no positional encoding); "
       "tonini = the depth map's own tokens beside the scene's and face's (Tonini et al. 2022's late fusion; also "
       "with attention_layout).",
       choices=("tonini", "diffusiongaze")),
    # --- UNet ----------------------------------------------------------------------------------------------------
    _o("unet_inout_channels", INT, 1, UNET, "UNet input and output channels (output doubled with adm_learn_sigma)."),
    _o("unet_inplanes", INT, 8, UNET, "UNet model_channels (time-embedding width is 4x)."),
    _o("unet_residual", INT, 1, UNET, "Residual blocks per UNet level."),
    _o("list_unet_inplanes_multipliers", INT_LIST, [1, 2, 3, 4], UNET, "channel_mult of each UNet level."),
    _o("list_unet_attention_levels", INT_LIST, [2, 4, 8], UNET,
       "Downsample factors at which a SpatialTransformer follows each residual block (2 = 32x32 of a 64x64 map)."),
    _o("unet_spatial_tf_heads", INT, 4, UNET, "Attention heads of each SpatialTransformer."),
    _o("unet_spatial_tf_layers", INT, 1, UNET, "Transformer blocks per SpatialTransformer."),
    _o("unet_context_vector", INT, 1024, UNET, "Width of the conditioning tokens the UNet cross-attends to."),
    _o("unet_dropout", FLOAT, 0.0, UNET, "Dropout inside the UNet residual blocks."),
    _o("use_scale_shift_norm", BOOL, True, UNET, "FiLM-style time conditioning in residual blocks (ADM)."),
    _o("conv_resample", BOOL, True, UNET, "Learned convolutions when up/down-sampling (ADM)."),
    _o("resblock_updown", BOOL, False, UNET, "Residual blocks for up/down-sampling (ADM)."),
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
       "(norm_std_flag) before the UNet; sampling is heatmap sampling with the state std-normalised every step.",
       choices=("heatmap", "point", "point_image")),
    _o("train_time_steps", INT, 1000, DIFF, "T, the number of diffusion steps in training."),
    _o("sample_time_steps", INT, 50, DIFF,
       "Sampling steps S on guided-diffusion's evenly spaced grid (respacing string \"S\", t = 0 and T-1 included; "
       "S = 1 is the single step from t = T-1)."),
    _o("sampler", STR, "auto", DIFF,
       "Sampler over the S-step grid: auto = the original's rule (DDIM when S < T, ancestral DDPM when S = T); ddim; "
       "ddpm; dpm++2m = DPM-Solver++(2M), deterministic, one network call per step.",
       choices=("auto", "ddim", "ddpm", "dpm++2m")),
    _o("ddim_eta", FLOAT, 0.0, DIFF, "DDIM noise scale eta in [0, 1]: 0 = deterministic, 1 = ancestral variance (DDIM only)."),
    _o("sample_k", INT, 1, DIFF,
       "Heatmaps sampled per input and averaged (one batched UNet call per step; the conditioning is computed once)."),
    _o("schedule_type", STR, "linear", DIFF, "Noise schedule.", choices=("linear", "cosine")),
    _o("factor_multiplier", FLOAT, 1.0, DIFF, "Multiplies every beta of the schedule (clipped to 0.999); 1 = as published."),
    _o("adm", BOOL, True, DIFF,
       "Use the ADM formulation configured by the adm_* options; false = the simple formulation set by predict_sthg."),
    _o("predict_sthg", STR, "pred_noise", DIFF, "Target of the simple formulation (fixed variance, MSE).",
       choices=("pred_noise", "pred_x0")),
    _o("adm_predict_xstart", BOOL, True, DIFF, "ADM: the network predicts x0 (else eps)."),
    _o("adm_predict_v", BOOL, False, DIFF, "ADM: the network predicts v = sqrt(abar) eps - sqrt(1 - abar) x0."),
    _o("adm_learn_sigma", BOOL, False, DIFF, "ADM: learned-range variance (UNet output channels x2), VB loss term."),
    _o("adm_use_kl", BOOL, False, DIFF, "ADM: train on the variational bound (RESCALED_KL)."),
    _o("adm_rescale_learned_sigmas", BOOL, False, DIFF,
       "ADM: hybrid loss MSE + VB * T/1000 (RESCALED_MSE); needs adm_learn_sigma (without it there is no VB term)."),
    _o("adm_rescale_timesteps", BOOL, False, DIFF, "ADM: the network sees t * 1000 / T."),
    _o("adm_sigma_small", BOOL, False, DIFF,
       "ADM with fixed variance: the posterior variance beta~_t (fixed small) instead of beta_t (fixed large, "
       "guided-diffusion's default). Read by ancestral (DDPM) sampling and the VB loss (adm_use_kl) only; not with "
       "adm_learn_sigma."),
    _o("diff_normalization", FLOAT, 3.0, DIFF,
       "v: a heatmap h in [0, 1] is diffused as x0 = 2 v h - v (SNR grows by v^2); predictions map back by (x + v)/(2 v)."),
    _o("norm_std_flag", BOOL, True, DIFF, "Divide x_t by its per-sample standard deviation before the UNet."),
    _o("clip_denoised", BOOL, False, DIFF, "Clamp the predicted x0 to the data range [-v, v] while sampling."),
    _o("offset_noise_strength", FLOAT, 0.1, DIFF, "Offset-noise strength s (only with noise_changer)."),
    _o("noise_changer", BOOL, False, DIFF,
       "Train with offset noise eps + s * delta, one delta ~ N(0, 1) per sample and channel (s = offset_noise_strength)."),
    _o("fix_snr", BOOL, False, DIFF,
       "Rescale the schedule to zero terminal SNR (Lin et al. 2024; diffusers' rescale_betas_zero_snr); needs x0 or v "
       "prediction, and sampling starts from pure noise at t = T-1 (which the S-step grid includes)."),
    _o("eval_from_picture", BOOL, False, DIFF,
       "SDEdit evaluation: start the reverse process at the last grid step <= time_noise from the picture_source "
       "heatmap noised to that step, instead of pure noise at T-1."),
    _o("time_noise", INT, 500, DIFF, "t0 (a training timestep in [0, T)) for eval_from_picture."),
    _o("picture_source", STR, "centre_prior", DIFF,
       "Starting heatmap of eval_from_picture: centre_prior (the dataset-free centre Gaussian of the baseline) or "
       "ground_truth (the test target: a diagnostic only, metrics.json says so).",
       choices=("centre_prior", "ground_truth")),
    _o("compat_original_ddim_step", BOOL, False, DIFF,
       "Compatibility with the original code, for comparing with its numbers: each DDIM step lands on abar(t-1) of "
       "the full schedule instead of abar of the next grid point (original_system.md section 3, item 1). DDIM only."),
    _o("compat_original_std_state", BOOL, False, DIFF,
       "Compatibility with the original code: with norm_std_flag, sampling divides the state x_t itself by its std at "
       "every step, not only the UNet input (original_system.md section 3, item 2)."),
    # --- losses --------------------------------------------------------------------------------------------------
    _o("diffusion_weight", FLOAT, 1e5, LOSS, "Weight of the diffusion loss (YAML also accepts the original `diffuion_weight`).",
       aliases=("diffuion_weight",)),
    _o("inout_weight", FLOAT, 100.0, LOSS, "Weight of the in/out BCE loss."),
    _o("x_loss", BOOL, True, LOSS, "Add the in/out BCE loss."),
    _o("mse_loss_weight_type", STR, "constant", LOSS,
       "Per-timestep weight of the MSE: constant, min_snr_K (Min-SNR-gamma, e.g. min_snr_5), max_snr_K, trunc_snr, snr, "
       "inv_snr; defined as min(SNR, K), max(SNR, K), max(SNR, 1), SNR, 1/SNR on the x0 error, divided by SNR for eps "
       "and by SNR + 1 for v targets; 1 where SNR = 0."),
    _o("extra_loss", STR, "none", LOSS,
       "Extra heatmap term on the network's prediction (docs/losses.md): location = squared distance (grid cells) "
       "between the soft argmax of the predicted x0 and the gaze point, x location_weight; cross_entropy = the "
       "target heatmap's cross-entropy with softmax(softargmax_beta * predicted x0), x location_weight; kl = "
       "KL(pred || target) of the softmaxed [0, 1] maps, x kl_weight (in-frame rows, mean over rows); "
       "location_original / kl_original = the DiffusionGaze code's terms as it computed them (every row, its "
       "units and reductions). The old switches other_loss / kl_div_loss / location_loss are read as this option.",
       choices=EXTRA_LOSSES),
    _o("out_of_frame_diffusion_loss", BOOL, False, LOSS,
       "Add the out-of-frame rows' diffusion loss (against their empty target heatmap) to the sum that is divided by "
       "the in-frame count, as the July 2023 DiffusionGaze code did (configs/thesis/readme_2023); off = the "
       "diffusion loss is the mean over in-frame rows."),
    _o("location_weight", FLOAT, 1e4, LOSS,
       "Weight of extra_loss location, cross_entropy and location_original."),
    _o("kl_weight", FLOAT, 10.0, LOSS, "Weight of extra_loss kl and kl_original."),
    _o("softargmax_beta", FLOAT, 100.0, LOSS,
       "Sharpness beta of softmax(beta * prediction) in extra_loss location, cross_entropy and location_original."),
    # --- training ------------------------------------------------------------------------------------------------
    _o("lr", FLOAT, 2.5e-4, TRAIN, "Learning rate of both parameter groups (see lr_gaze)."),
    _o("lr_gaze", FLOAT, None, TRAIN,
       "Learning rate of the gaze backbone and in/out head group; unset = lr. Both groups follow one schedule.",
       nullable=True),
    _o("weight_decay", FLOAT, 0.0, TRAIN,
       "Weight decay: AdamW's decoupled decay (w <- w - lr * weight_decay * w), or with coupled_weight_decay the "
       "original's Adam L2 term added to the gradient."),
    _o("coupled_weight_decay", BOOL, False, TRAIN,
       "Use Adam with weight_decay as a coupled L2 penalty on the gradient (the original's optimizer) instead of "
       "AdamW."),
    _o("epochs", INT, 60, TRAIN, "Number of training epochs."),
    _o("lr_schedular", BOOL, False, TRAIN, "Linear warm-up over 10 % of the steps, then cosine to 0 (per iteration)."),
    _o("warmup_linear", BOOL, False, TRAIN, "Linear warm-up over 10 % of the steps, then constant."),
    _o("lr_anneal_steps", INT, 0, TRAIN, "Linear decay of the learning rate to 0 over N steps, then stop (0 = off)."),
    _o("grad_clip", FLOAT, 1.0, TRAIN, "Max global gradient norm (0 = no clipping)."),
    _o("amp", STR, "off", TRAIN,
       "Mixed precision (apex levels mapped onto torch.autocast): off/O0 = fp32; O1, O2, O3, fp16 = autocast "
       "float16 with a GradScaler; bf16 = autocast bfloat16 without a scaler.",
       choices=("off", "O0", "O1", "O2", "O3", "fp16", "bf16"), nullable=True),
    _o("channels_last", BOOL, False, TRAIN, "Use the channels-last memory format for the model and inputs."),
    _o("sync_batchnorm", BOOL, False, TRAIN,
       "Under torchrun on CUDA: synchronise BatchNorm statistics across processes (SyncBatchNorm)."),
    _o("torch_compile", BOOL, False, TRAIN,
       "Compile the UNet and the gaze backbone with torch.compile (parameter names and checkpoints unchanged); the "
       "first steps are slow while it compiles."),
    _o("ema_on", BOOL, False, TRAIN,
       "Keep an exponential moving average of the parameters and BatchNorm statistics (saved in checkpoints) and "
       "evaluate with it; metrics.json names the evaluated weights."),
    _o("ema_rate", FLOAT, 0.9999, TRAIN, "EMA decay rate: ema <- rate * ema + (1 - rate) * weights after each step."),
    _o("evaluate_every", INT, 5, TRAIN, "Evaluate every N epochs (and after the last)."),
    _o("save_every", INT, 5, TRAIN, "Keep a numbered checkpoint every N epochs (the latest is always kept)."),
    _o("save_every_steps", INT, 0, TRAIN,
       "Also write the resumable last.pt every N optimisation steps inside an epoch, so a crash loses at most N steps "
       "(0 = at the end of each epoch only)."),
    # --- evaluation ----------------------------------------------------------------------------------------------
    _o("eval_batch_size", INT, None, EVAL, "Batch size for evaluation; unset = batch_size.", nullable=True),
    _o("eval_dataset", STR, None, EVAL,
       "Dataset whose test split is evaluated, with its own protocol (unset = source_dataset): cross-dataset "
       "evaluation, in a training run or with eval_weights.",
       choices=("gazefollow", "videoattentiontarget", "goo"), nullable=True),
    _o("eval_dataset_dir", STR, None, EVAL,
       "Root folder of eval_dataset (unset = source_dataset_dir; required when eval_dataset differs).",
       nullable=True),
    _o("Debugging_maps", BOOL, False, EVAL,
       "Write evaluation figures (always done with eval_weights): best, median and worst samples by L2 and "
       "denoising trajectories, into <run>/figures/."),
    _o("debug_maps_per_group", INT, 4, EVAL, "Samples drawn per group (best, median, worst by L2) in the figures."),
    _o("debug_trajectories", INT, 3, EVAL,
       "Samples whose denoising trajectory (the predicted heatmap at several sampling steps) is drawn."),
    _o("eval_metric_workers", INT, 0, EVAL,
       "Processes computing the per-sample metrics while the model predicts (0 = in the main process)."),
    # --- logging -------------------------------------------------------------------------------------------------
    _o("print_every", INT, 10, LOG, "Print and log training statistics every N batches."),
    _o("no_wandb", BOOL, False, LOG, "Disable Weights & Biases (on by default; offline when no account is set up)."),
    _o("watch_wandb", BOOL, False, LOG, "Log gradients and parameters to wandb (wandb.watch)."),
)

# Old spellings of `extra_loss`, accepted in YAML files, on the command line and in stored configurations and
# translated where they enter (engine.original_layout.LEGACY_LOSS_SWITCHES); never options of a configuration.
LEGACY_OPTIONS: tuple[Option, ...] = (
    _o("other_loss", BOOL, False, LOSS,
       "Old switch, read as extra_loss: location (with kl_div_loss: kl; with location_loss cross_entropy: "
       "cross_entropy); with DiffusionGaze-layout files, the original's terms (location_original / kl_original)."),
    _o("kl_div_loss", BOOL, False, LOSS, "Old switch, with other_loss: read as extra_loss kl (or kl_original)."),
    _o("location_loss", STR, "softargmax", LOSS, "Old option, with other_loss: cross_entropy = extra_loss cross_entropy.",
       choices=("softargmax", "cross_entropy")),
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

    @property
    def by_name(self) -> dict[str, Option]:
        return {o.name: o for o in self.options}

    @property
    def aliases(self) -> dict[str, str]:
        return {alias: o.name for o in self.options for alias in o.aliases}


def markdown_table(options: tuple[Option, ...] = OPTIONS, groups: tuple[str, ...] = GROUPS) -> str:
    """The options as Markdown tables, one per group: the README's option reference is this text (a test checks)."""
    lines = []
    for group in groups:
        lines += [f"**{group}**", "", "| option | type | default | meaning |", "|---|---|---|---|"]
        for option in options:
            if option.group == group:
                kind = option.kind if option.choices is None else " / ".join(map(str, option.choices))
                if option.kind == STR_LIST and option.choices is not None:
                    kind = f"list of {kind}"
                default = "unset" if option.default is None else option.default
                lines.append(f"| `{option.name}` | {kind} | `{default}` | {option.help.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def rewrite_readme_block(table_text: str, start: str, end: str) -> None:
    """Replace the README text between the markers `start` (a whole line) and `end` by `table_text`."""
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text()
    head, rest = text.split(start)
    readme.write_text(head + start + table_text + end + rest.split(end)[1])


if __name__ == "__main__":  # `python -m engine.options` rewrites the option reference in README.md
    rewrite_readme_block(markdown_table(), "<!-- options:start (generated by engine.options.markdown_table) -->\n",
                         "<!-- options:end -->")

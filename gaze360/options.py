"""Every option of the Gaze360 / RT-GENE trainer, declared once (name, type, default, group, help), and its checks.

`GAZE360` is the table engine.config resolves for `gaze360_main.py` (defaults < YAML < flags, as main.py).
Defaults are the MultiZoomGaze / Gaze360 originals (ResNet-18 with its 1000-way fc, 256 features, 2-layer
bidirectional LSTM, Adam 1e-4, batch 64, 224 px, square resize, no extra random crop, the original's yaw decoding)
except where the original had a defect (bidirectional on; missing frames are errors). This project's own choices
(aspect-preserving resize, atan2 decoding, crop augmentation, every crop of every frame) are named options.
`python -m gaze360.options` rewrites the Gaze360 option table in README.md.
"""
from __future__ import annotations

from engine.options import BOOL, FLOAT, INT, INT_LIST, STR, Option, OptionTable, markdown_table, rewrite_readme_block

RUN, DATA, MODEL, LOSS, TRAIN, EVAL, LOG = "Run", "Data", "Model", "Losses", "Training", "Evaluation", "Logging"
GROUPS = (RUN, DATA, MODEL, LOSS, TRAIN, EVAL, LOG)


def _o(name, kind, default, group, help, **kw) -> Option:
    return Option(name, kind, default, group, help, **kw)


OPTIONS: tuple[Option, ...] = (
    # --- run -----------------------------------------------------------------------------------------------------
    _o("tag", STR, "gaze360", RUN, "Name of the run: outputs go to <output_dir>/<tag> (RT-GENE: one fold_<k> each)."),
    _o("device", STR, "cuda", RUN, "Device to run on; an unavailable device is an error.", choices=("cpu", "cuda", "mps")),
    _o("cpu_threads", INT, 0, RUN,
       "torch intra-op threads on CPU (0 = torch's default); 1 is fastest for small models on a busy machine."),
    _o("output_dir", STR, "output", RUN, "Folder that holds one sub-folder per run tag."),
    _o("seed", INT, 0, RUN, "Seed of every random generator (torch, numpy, python, augmentations)."),
    _o("no_resume", BOOL, False, RUN, "Start afresh even if <output_dir>/<tag> holds a checkpoint."),
    _o("no_save", BOOL, False, RUN, "Keep only last.pt and best.pt, not one checkpoint every save_every epochs."),
    _o("backbone_weights", STR, None, RUN,
       "torchvision-named ImageNet weights for the backbone (e.g. resnet18-f37072fd.pth), fc included.", nullable=True),
    _o("eval_weights", STR, None, RUN,
       "If set, only evaluate these weights: a checkpoint of this trainer, or an original MultiZoomGaze / Gaze360 "
       ".pth.tar ({'epoch', 'state_dict'} with DataParallel's 'module.' prefix; every key is mapped and reported).",
       nullable=True),
    _o("init_weights", STR, None, RUN,
       "Start training from these weights (a checkpoint of this trainer or an original .pth.tar), e.g. a trained "
       "backbone for a new head; init_weights_parts chooses which parts are copied.", nullable=True),
    _o("init_weights_parts", STR, "all", RUN,
       "Which parts of init_weights to copy: everything, or only the backbone (trunk, fc, feature layer) so a new "
       "fusion and head are trained on it (the notes' 'new head on a trained backbone').",
       choices=("all", "backbone")),
    _o("analysis", STR, "none", RUN,
       "With eval_weights: also run an analysis on the test split: the magnification sweep or the better-than-random "
       "crop oracle (CSV + plot).", choices=("none", "magnification", "oracle")),
    # --- data ----------------------------------------------------------------------------------------------------
    _o("dataset", STR, "gaze360", DATA, "Dataset format: Gaze360 split files, or RT-GENE subjects (3-fold protocol).",
       choices=("gaze360", "rtgene")),
    _o("dataset_dir", STR, "data/gaze360_synthetic", DATA,
       "Root folder: Gaze360 = {train,validation,test}.txt + imgs/; RT-GENE = s000_glasses .. s016_glasses."),
    _o("input_size", INT, 224, DATA, "Side in pixels of every image the backbone sees (the original: 224)."),
    _o("num_frames", INT, 7, DATA, "Frames per sample: 1 (static) or an odd window t-k..t+k around the labelled frame."),
    _o("crop_sizes", INT_LIST, [224], DATA,
       "Centre-crop sides in pixels (at input_size) of the crop list: Resize -> CenterCrop(c) -> Resize(input_size). "
       "A side above input_size zooms out: the frame is padded with black to c x c (the notes' zoom-out crops). "
       "One entry = no multi-crop. Order matters."),
    _o("symmetric_crops", BOOL, False, DATA, "Use the symmetric list c + reversed(c[:-1]) of crop_sizes."),
    _o("frame_crops", STR, "zip", DATA,
       "How frames and crops make the sequence: zip = frame i gets crop i (the original: one frame repeated per crop "
       "when num_frames is 1, one crop for every frame when the list has one entry, else num_frames = crops); "
       "all = every frame gets every crop, frame-major (this project's layout: num_frames x crops images).",
       choices=("zip", "all")),
    _o("resize", STR, "square", DATA,
       "First resize of each frame: square = squash to input_size x input_size (the original); shorter_side = keep "
       "the aspect ratio, shorter side input_size (this project's: heads are not distorted; needs a centre crop).",
       choices=("square", "shorter_side")),
    _o("train_crop_scale", FLOAT, 1.0, DATA,
       "Lower area bound of a per-frame training RandomResizedCrop (scale in [s, 1], ratio 3/4..4/3); 1 = off, the "
       "original. This project's augmentation (e.g. 0.8) shows the model small shifts and zooms of the head."),
    _o("crop_size_noise", FLOAT, 0.0, DATA,
       "Training: add Gaussian noise of this standard deviation (pixels) to each crop side, rounded, clamped to "
       "[8, 2 input_size] (the notes' 'Gaussian noise on the crop size'); 0 = off."),
    _o("eval_random_crop_prob", FLOAT, 0.0, DATA,
       "Evaluation: with this probability per frame, centre-crop it to eval_random_crop_size then resize back (the "
       "notes' RandomCenterCrop magnification); 0 = off."),
    _o("eval_random_crop_size", INT, 200, DATA, "Crop side (pixels at input_size) of eval_random_crop_prob."),
    _o("magnify_frame", INT, -1, DATA,
       "One-in-sequence magnification: centre-crop only image k (0-based in the sequence) to magnify_size, "
       "then resize back, in every split (the notes' OneInSequenceMagnification); -1 = off."),
    _o("magnify_size", INT, 175, DATA, "Crop side (pixels at input_size) of magnify_frame."),
    _o("time_order", STR, "forward", DATA,
       "Training frame order: forward; reverse = the window reversed with probability 0.5 (the notes' 'reverses "
       "the time'); random_walk = frames drawn by a random walk from the centre, a step forward with probability "
       "forward_bias (the original's random_walk).", choices=("forward", "reverse", "random_walk")),
    _o("forward_bias", FLOAT, 0.7, DATA, "Probability of a forward step of time_order random_walk."),
    _o("window", STR, "centred", DATA,
       "Which frame of the window is labelled: centred (t-k..t+k) or last (t-2k..t: predict the last frame, the "
       "original's future_prediction).", choices=("centred", "last")),
    _o("missing_frames", STR, "error", DATA,
       "A missing or unreadable frame: stop with an error naming the file, or skip the sample (counted and reported).",
       choices=("error", "skip")),
    _o("skip_validation", BOOL, False, DATA,
       "Do not read every frame header again before training when these split / label files (same paths, sizes and "
       "modification times) were validated before (cached in <output_dir>/.data_validation); without such a "
       "result the data is validated anyway."),
    _o("front_facing", STR, "yaw", DATA,
       "Definition of the front-facing subset: |yaw| <= front_facing_degrees; also |pitch| <= it; or within it of "
       "the camera direction.", choices=("yaw", "yaw_pitch", "camera")),
    _o("front_facing_degrees", FLOAT, 20.0, DATA, "Threshold of the front-facing subset in degrees."),
    _o("rtgene_face", STR, "face_before_inpainting", DATA,
       "RT-GENE face crops: <subject>/original/face_before_inpainting/ (the original trainer's default), the "
       "inpainted ones (inpainted/face/), or original/face/.",
       choices=("face_before_inpainting", "inpainted", "original")),
    _o("rtgene_folds", INT_LIST, [1, 2, 3], DATA, "RT-GENE test folds to run (1..3); the mean is reported."),
    _o("batch_size", INT, 64, DATA, "Samples per optimisation step."),
    _o("num_workers", INT, 4, DATA,
       "DataLoader worker processes (0 = load in the main process); training workers persist across epochs."),
    # --- model ---------------------------------------------------------------------------------------------------
    _o("backbone_layers", INT_LIST, [2, 2, 2, 2], MODEL, "Blocks per ResNet layer ([2,2,2,2] = ResNet-18)."),
    _o("backbone_block", STR, "basic", MODEL, "ResNet block type.", choices=("basic", "bottleneck")),
    _o("backbone_inplanes", INT, 64, MODEL, "Stem width of the ResNet (64 = torchvision)."),
    _o("backbone_fc", INT, 1000, MODEL,
       "Width of the backbone's own fc layer (1000: the ImageNet classifier, as Gaze360's code, so ImageNet weights "
       "fill it); 0 = the pooled features directly."),
    _o("feature_size", INT, 256, MODEL,
       "Per-image feature size: backbone fc -> ReLU -> Linear(feature_size) (the original's fc1 -> ReLU -> fc2)."),
    _o("feature_relu", BOOL, False, MODEL,
       "ReLU after the feature layer, before the head (the original's static models have it; its LSTM and "
       "multi-crop models do not)."),
    _o("spatial_transformer", BOOL, False, MODEL,
       "A spatial transformer (affine, initialised to identity) in front of the backbone: this project's own "
       "design (the original's was never published)."),
    _o("stn_lr_multiplier", FLOAT, 1.0, MODEL,
       "Learning rate of the spatial transformer = lr x this (the notes found a lower one better)."),
    _o("temporal", STR, "lstm", MODEL,
       "How the sequence of images is fused: lstm; maxpool = element-wise max of the feature vectors (the "
       "original's MAX); spatial_max = max of the trunk's feature maps before pooling (the original's SPATIAL_MAX, "
       "its published MSA); attention = softmax-weighted sum of the feature vectors (attention_dim); none = one "
       "image.", choices=("lstm", "maxpool", "spatial_max", "attention", "none")),
    _o("attention_dim", INT, 128, MODEL, "Latent width of temporal: attention (the notes' Attn_dim)."),
    _o("lstm_layers", INT, 2, MODEL, "LSTM layers."),
    _o("lstm_bidirectional", BOOL, True, MODEL, "Bidirectional LSTM (the original defaulted to off by mistake)."),
    _o("target_index", STR, "middle", MODEL,
       "Which LSTM output predicts: the middle (L // 2) or the last (L - 1) of the sequence, or the last crop of the "
       "central frame (frame_crops: all).", choices=("middle", "last", "central_frame_last")),
    _o("target", STR, "sincos", MODEL,
       "Output: (yaw, pitch) = (pi tanh, pi/2 tanh), or (sin yaw, cos yaw, sin pitch) (tanh), or sincos45 = those "
       "plus sin/cos(yaw + 45 deg) (the notes' extra targets); plus sigma.",
       choices=("yawpitch", "sincos", "sincos45")),
    _o("sigma_scale", STR, "pi", MODEL,
       "sigma = pi sigmoid (the original, most models) or one = plain sigmoid (the original's StaticSC).",
       choices=("pi", "one")),
    _o("with_sigma", BOOL, True, MODEL,
       "An uncertainty output; false = the original RT-GENE model without it (use loss mse)."),
    _o("yaw_decoding", STR, "original", MODEL,
       "Yaw from (sin, cos): the original's average of a cos-based and a sin-based estimate, or atan2 (this "
       "project's: wrap-safe and equal on unit vectors, while the average drifts up to ~40 deg on non-unit outputs).",
       choices=("original", "atan2")),
    # --- losses --------------------------------------------------------------------------------------------------
    _o("loss", STR, "sincos_pinball", LOSS,
       "pinball (quantiles around output -/+ sigma), sincos_pinball (pinball + the unit-norm term on (sin, cos) "
       "yaw), or mse (sigma unused).", choices=("pinball", "sincos_pinball", "mse")),
    _o("pinball_epsilon", FLOAT, 0.0, LOSS,
       "Epsilon-insensitive pinball: residuals within epsilon of the quantile bound cost nothing (the notes' "
       "'epsilon pinball loss'); 0 = the plain pinball loss."),
    _o("pinball_quantile", FLOAT, 0.1, LOSS, "Lower quantile q of the pinball loss; the upper one is 1 - q."),
    _o("sincos_norm_weight", FLOAT, 0.1, LOSS,
       "w in (1 - w) pinball + w MSE(||(sin yaw, cos yaw)||, 1) of sincos_pinball."),
    # --- training ------------------------------------------------------------------------------------------------
    _o("lr", FLOAT, 1e-4, TRAIN, "Adam learning rate."),
    _o("weight_decay", FLOAT, 0.0, TRAIN, "Adam (L2) weight decay."),
    _o("adam_beta1", FLOAT, 0.9, TRAIN, "Adam beta1."),
    _o("adam_beta2", FLOAT, 0.999, TRAIN, "Adam beta2 (the original RT-GENE trainer: 0.95)."),
    _o("freeze_backbone_epochs", INT, 0, TRAIN,
       "Train with the backbone's parameters (trunk, fc, feature layer) frozen for this many epochs, then unfreeze "
       "them (the notes' 'freeze the base network, unfreeze at epoch k'; BatchNorm statistics still update, as in the "
       "original's freezing); 0 = never frozen."),
    _o("early_stopping_patience", INT, 0, TRAIN,
       "Stop when the validation error has not improved for this many epochs (the original RT-GENE trainer: 10); "
       "0 = off."),
    _o("epochs", INT, 100, TRAIN, "Training epochs; the epoch with the lowest validation error is kept as best.pt."),
    _o("grad_clip", FLOAT, 0.0, TRAIN, "Max global gradient norm (0 = no clipping, as the original)."),
    _o("amp", STR, "off", TRAIN,
       "Mixed precision: off = fp32; fp16 = autocast float16 with a GradScaler; bf16 = autocast bfloat16.",
       choices=("off", "fp16", "bf16")),
    _o("save_every", INT, 10, TRAIN, "Keep a numbered checkpoint every N epochs (last.pt is always kept)."),
    # --- evaluation ----------------------------------------------------------------------------------------------
    _o("eval_batch_size", INT, None, EVAL, "Batch size for evaluation; unset = batch_size.", nullable=True),
    _o("magnification_deltas", INT_LIST, [0, 10, 20, 30, 40, 50, 60, 70, 80], EVAL,
       "Analyses: evaluate with an extra centre crop of input_size - delta pixels (then resized back) for each delta; "
       "the oracle picks per sample the best of these crops."),
    # --- logging -------------------------------------------------------------------------------------------------
    _o("print_every", INT, 20, LOG, "Print and log training statistics every N batches."),
    _o("no_wandb", BOOL, False, LOG, "Disable Weights & Biases (on by default; offline when no account is set up)."),
    _o("watch_wandb", BOOL, False, LOG, "Log gradients and parameters to wandb (wandb.watch)."),
)


def crop_list(config) -> list[int]:
    """The crop sides actually used: crop_sizes, or its symmetric form c + reversed(c[:-1])."""
    crops = list(config.crop_sizes)
    return crops + crops[-2::-1] if config.symmetric_crops else crops


def validate(config) -> None:
    """Cross-option checks; each error names the options and where their values came from."""
    from engine.config import ConfigError

    def at(name: str) -> str:
        return f"'{name}' ({config.sources[name]})"

    for name in ("input_size", "num_frames", "batch_size", "epochs", "save_every", "print_every", "feature_size",
                 "lstm_layers", "backbone_inplanes"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{at(name)} must be positive, found {getattr(config, name)}")
    for name in ("cpu_threads", "num_workers", "backbone_fc", "lr", "weight_decay", "grad_clip", "front_facing_degrees"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{at(name)} must be >= 0, found {getattr(config, name)}")
    if config.num_frames % 2 == 0:
        raise ConfigError(f"{at('num_frames')} must be odd (a window centred on the labelled frame), "
                          f"found {config.num_frames}")
    bad = [c for c in config.crop_sizes if not 0 < c <= 2 * config.input_size]
    if bad:
        raise ConfigError(f"{at('crop_sizes')}: every crop must be in 1..2 x input_size = {2 * config.input_size} "
                          f"({at('input_size')}; above input_size = zoomed out, padded), found {bad}")
    deltas = [d for d in config.magnification_deltas if not 0 <= d < config.input_size]
    if deltas and config.analysis != "none":  # only the analyses use them
        raise ConfigError(f"{at('magnification_deltas')}: every delta must be in 0..input_size-1 for "
                          f"{at('analysis')}, found {deltas}")
    if not 0.0 < config.train_crop_scale <= 1.0:
        raise ConfigError(f"{at('train_crop_scale')} must be in (0, 1], found {config.train_crop_scale}")
    if not 0.0 < config.pinball_quantile < 0.5:
        raise ConfigError(f"{at('pinball_quantile')} must be in (0, 0.5), found {config.pinball_quantile}")
    if not 0.0 <= config.sincos_norm_weight <= 1.0:
        raise ConfigError(f"{at('sincos_norm_weight')} must be in [0, 1], found {config.sincos_norm_weight}")
    crops = len(crop_list(config))
    if config.frame_crops == "zip" and crops > 1 and config.num_frames > 1 and crops != config.num_frames:
        raise ConfigError(f"{at('frame_crops')} = 'zip' gives frame i crop i, so {at('num_frames')} = "
                          f"{config.num_frames} needs one crop or {config.num_frames} crops, found {crops} "
                          f"({at('crop_sizes')}, {at('symmetric_crops')}); or use frame_crops: all")
    length = config.num_frames * crops if config.frame_crops == "all" else max(config.num_frames, crops)
    if config.temporal == "none" and length != 1:
        raise ConfigError(f"{at('temporal')} = 'none' takes one image per sample, but the sequence has {length} "
                          f"({at('num_frames')}, {at('crop_sizes')}, {at('frame_crops')}); use lstm or maxpool")
    if config.target_index == "central_frame_last" and config.frame_crops != "all":
        raise ConfigError(f"{at('target_index')} = 'central_frame_last' needs {at('frame_crops')} = 'all'")
    if config.loss == "sincos_pinball" and config.target not in ("sincos", "sincos45"):
        raise ConfigError(f"{at('loss')} = 'sincos_pinball' regularises (sin yaw, cos yaw), which needs "
                          f"{at('target')} = 'sincos' or 'sincos45', found {config.target!r}")
    if not config.with_sigma and config.loss != "mse":
        raise ConfigError(f"{at('with_sigma')} = false leaves no sigma for the pinball loss: set {at('loss')} = "
                          f"'mse', found {config.loss!r}")
    if not -1 <= config.magnify_frame < length:
        raise ConfigError(f"{at('magnify_frame')} must be -1 (off) or an image index 0..{length - 1}, found "
                          f"{config.magnify_frame}")
    for name, active in (("magnify_size", config.magnify_frame >= 0),
                         ("eval_random_crop_size", config.eval_random_crop_prob > 0)):
        if active and not 0 < getattr(config, name) <= config.input_size:
            raise ConfigError(f"{at(name)} must be in 1..input_size = {config.input_size}, found "
                              f"{getattr(config, name)}")
    for name in ("eval_random_crop_prob", "forward_bias"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise ConfigError(f"{at(name)} must be in [0, 1], found {getattr(config, name)}")
    for name in ("crop_size_noise", "pinball_epsilon", "stn_lr_multiplier", "freeze_backbone_epochs",
                 "early_stopping_patience", "attention_dim"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{at(name)} must be >= 0, found {getattr(config, name)}")
    for name, used, unless in (
            ("stn_lr_multiplier", config.spatial_transformer, "spatial_transformer is on"),
            ("attention_dim", config.temporal == "attention", "temporal is 'attention'"),
            ("forward_bias", config.time_order == "random_walk", "time_order is 'random_walk'"),
            ("eval_random_crop_size", config.eval_random_crop_prob > 0, "eval_random_crop_prob > 0"),
            ("magnify_size", config.magnify_frame >= 0, "magnify_frame >= 0"),
            ("init_weights_parts", bool(config.init_weights), "init_weights is set")):
        if not used and config.sources[name] != "default":
            raise ConfigError(f"{at(name)} has no effect unless {unless}")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ConfigError(f"{at(name)} must be in [0, 1), found {getattr(config, name)}")
    if config.dataset == "rtgene" and config.num_frames != 1:
        raise ConfigError(f"{at('dataset')} = 'rtgene' has single images, so {at('num_frames')} must be 1, "
                          f"found {config.num_frames}")
    if any(fold not in (1, 2, 3) for fold in config.rtgene_folds) or len(set(config.rtgene_folds)) != len(
            config.rtgene_folds):
        raise ConfigError(f"{at('rtgene_folds')} must be distinct folds among 1, 2, 3, found {config.rtgene_folds}")
    if config.analysis != "none" and not config.eval_weights:
        raise ConfigError(f"{at('analysis')} = {config.analysis!r} analyses trained weights: set 'eval_weights'")


GAZE360 = OptionTable(
    options=OPTIONS,
    groups=GROUPS,
    prog="gaze360_main.py",
    description="3D gaze estimation on Gaze360 / RT-GENE with multi-crop sin-cos LSTM models: train, resume, "
                "evaluate, analyse. Precedence: declared defaults < YAML files < flags.",
    yaml_flags=(("yaml", "YAML file (flat, or keys grouped under any section names)"),),
    validate=validate,
)

README_START = "<!-- gaze360-options:start (generated by gaze360.options) -->\n"
README_END = "<!-- gaze360-options:end -->"

if __name__ == "__main__":  # `python -m gaze360.options` rewrites the Gaze360 option reference in README.md
    rewrite_readme_block(markdown_table(OPTIONS, GROUPS), README_START, README_END)

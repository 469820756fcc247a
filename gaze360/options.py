"""Every option of the Gaze360 / RT-GENE trainer, declared once with its rules (engine.option_rules), and its checks.

`GAZE360` is the table engine.config resolves for `gaze360_main.py` (defaults < YAML < flags, as main.py).
Defaults are the MultiZoomGaze / Gaze360 originals (ResNet-18 with its 1000-way fc, 256 features, 2-layer
bidirectional LSTM, Adam 1e-4, batch 64, 224 px, square resize, no extra random crop, the original's yaw decoding)
except where the original had a defect (bidirectional on; missing frames are errors). This project's own choices
(aspect-preserving resize, atan2 decoding, crop augmentation, every crop of every frame) are named options.
`python -m gaze360.options` rewrites the Gaze360 option table in docs/options.md.
"""
from __future__ import annotations

from engine.option_rules import (
    ALWAYS, BELOW_ONE, NON_NEGATIVE, POSITIVE, SEED, UNIT_INTERVAL, AnyOf, Bounds, Check, Given, Is, Not, On, Rule,
)
from engine.options import (
    BOOL, FLOAT, INT, INT_LIST, STR, Option, OptionTable, logging_options, markdown_table, rewrite_block,
)

RUN, DATA, MODEL, LOSS, TRAIN, EVAL, LOG = "Run", "Data", "Model", "Losses", "Training", "Evaluation", "Logging"
GROUPS = (RUN, DATA, MODEL, LOSS, TRAIN, EVAL, LOG)


def _o(name, kind, default, group, help, **kw) -> Option:
    return Option(name, kind, default, group, help, **kw)


LR_ZERO = ("every parameter keeps its starting value (the spatial transformer's rate is lr x stn_lr_multiplier): "
           "the run trains a model that never changes (BatchNorm statistics still follow the data); fine for a "
           "pipeline check or a baseline of the starting weights, else set lr > 0")


def crop_list(config) -> list[int]:
    """The crop sides actually used: crop_sizes, or its symmetric form c + reversed(c[:-1])."""
    crops = list(config.crop_sizes)
    return crops + crops[-2::-1] if config.symmetric_crops else crops


def sequence_length(config) -> int:
    """Images per sample L. frame_crops 'zip': frame i gets crop i (one frame repeated per crop when num_frames is
    1; one crop applied to every frame when the list has one entry); 'all': every frame gets every crop."""
    frames, crops = config.num_frames, len(crop_list(config))
    if config.frame_crops == "all":
        return frames * crops
    return max(frames, crops)


OPTIONS: tuple[Option, ...] = (
    # --- run -----------------------------------------------------------------------------------------------------
    _o("tag", STR, "gaze360", RUN, "Name of the run: outputs go to <output_dir>/<tag> (RT-GENE: one fold_<k> each).",
       evaluation="output", resume="output (a renamed run folder)"),
    _o("device", STR, "cuda", RUN, "Device to run on; an unavailable device is an error.", choices=("cpu", "cuda", "mps"),
       evaluation="execution"),
    _o("cpu_threads", INT, 0, RUN,
       "torch intra-op threads on CPU (0 = torch's default); 1 is fastest for small models on a busy machine.",
       bounds=NON_NEGATIVE, evaluation="execution", resume="execution"),
    _o("output_dir", STR, "output", RUN, "Folder that holds one sub-folder per run tag.",
       path=True, evaluation="output", resume="output (a moved run folder)"),
    _o("seed", INT, 0, RUN, "Seed of every random generator (torch, numpy, python, augmentations).", bounds=SEED),
    _o("no_resume", BOOL, False, RUN, "Start afresh even if <output_dir>/<tag> holds a checkpoint.",
       evaluation="training only", resume="run control"),
    _o("no_save", BOOL, False, RUN, "Keep only last.pt and best.pt, not one checkpoint every save_every epochs.",
       evaluation="training only", resume="output"),
    _o("backbone_weights", STR, None, RUN,
       "torchvision-named ImageNet weights for the backbone (e.g. resnet18-f37072fd.pth), fc included.", nullable=True,
       path=True, evaluation="training only", resume="read only by a fresh start"),
    _o("eval_weights", STR, None, RUN,
       "If set, only evaluate these weights: a checkpoint of this trainer, or an original MultiZoomGaze / Gaze360 "
       ".pth.tar ({'epoch', 'state_dict'} with DataParallel's 'module.' prefix; every key is mapped and reported).",
       nullable=True, path=True, evaluation="weights"),
    _o("init_weights", STR, None, RUN,
       "Start training from these weights (a checkpoint of this trainer or an original .pth.tar), e.g. a trained "
       "backbone for a new head; init_weights_parts chooses which parts are copied.", nullable=True,
       path=True, evaluation="training only", resume="read only by a fresh start"),
    _o("init_weights_parts", STR, "all", RUN,
       "Which parts of init_weights to copy: everything, or only the backbone (trunk, fc, feature layer) so a new "
       "fusion and head are trained on it (the notes' 'new head on a trained backbone').",
       choices=("all", "backbone"),
       read_with=Given("init_weights"), evaluation="training only", resume="read only by a fresh start"),
    _o("analysis", STR, "none", RUN,
       "With eval_weights: also run an analysis on the test split: the magnification sweep or the better-than-random "
       "crop oracle (CSV + plot).", choices=("none", "magnification", "oracle"),
       needs=(Rule(Given("eval_weights"), "the analyses run on trained weights: set 'eval_weights'"),
              Rule(Check("every magnification_deltas item < input_size", ("magnification_deltas", "input_size"),
                         lambda c: all(delta < c.input_size for delta in c.magnification_deltas)),
                   "the analyses crop input_size - delta pixels")),
       evaluation="analysis of the weights"),
    # --- data ----------------------------------------------------------------------------------------------------
    _o("dataset", STR, "gaze360", DATA, "Dataset format: Gaze360 split files, or RT-GENE subjects (3-fold protocol).",
       choices=("gaze360", "rtgene"),
       needs=Rule(Is("num_frames", 1), "RT-GENE has single images", when=("rtgene",))),
    _o("dataset_dir", STR, "data/gaze360_synthetic", DATA,
       "Root folder: Gaze360 = {train,validation,test}.txt + imgs/; RT-GENE = s000_glasses .. s016_glasses.",
       path=True, evaluation="data location", resume="data location (the same data, moved)"),
    _o("input_size", INT, 224, DATA, "Side in pixels of every image the backbone sees (the original: 224).",
       bounds=POSITIVE),
    _o("num_frames", INT, 7, DATA, "Frames per sample: 1 (static) or an odd window t-k..t+k around the labelled frame.",
       bounds=POSITIVE,
       needs=Rule(Check("an odd num_frames (a window centred on the labelled frame)", (),
                        lambda c: c.num_frames % 2 == 1), when=ALWAYS)),
    _o("crop_sizes", INT_LIST, [224], DATA,
       "Centre-crop sides in pixels (at input_size) of the crop list: Resize -> CenterCrop(c) -> Resize(input_size). "
       "A side above input_size zooms out: the frame is padded with black to c x c (the notes' zoom-out crops). "
       "One entry = no multi-crop. Order matters.",
       bounds=POSITIVE,
       needs=Rule(Check("every crop <= 2 x input_size (above input_size = zoomed out, padded)", ("input_size",),
                        lambda c: all(side <= 2 * c.input_size for side in c.crop_sizes)), when=ALWAYS)),
    _o("symmetric_crops", BOOL, False, DATA, "Use the symmetric list c + reversed(c[:-1]) of crop_sizes."),
    _o("frame_crops", STR, "zip", DATA,
       "How frames and crops make the sequence: zip = frame i gets crop i (the original: one frame repeated per crop "
       "when num_frames is 1, one crop for every frame when the list has one entry, else num_frames = crops); "
       "all = every frame gets every crop, frame-major (this project's layout: num_frames x crops images).",
       choices=("zip", "all"),
       needs=Rule(Check("one crop or num_frames crops (crop_sizes, symmetric_crops)",
                        ("num_frames", "crop_sizes", "symmetric_crops"),
                        lambda c: len(crop_list(c)) in (1, c.num_frames) or c.num_frames == 1),
                  "'zip' gives frame i crop i; or use frame_crops: all", when=("zip",))),
    _o("resize", STR, "square", DATA,
       "First resize of each frame: square = squash to input_size x input_size (the original); shorter_side = keep "
       "the aspect ratio, shorter side input_size (this project's: heads are not distorted; needs a centre crop).",
       choices=("square", "shorter_side")),
    _o("train_crop_scale", FLOAT, 1.0, DATA,
       "Lower area bound of a per-frame training RandomResizedCrop (scale in [s, 1], ratio 3/4..4/3); 1 = off, the "
       "original. This project's augmentation (e.g. 0.8) shows the model small shifts and zooms of the head.",
       bounds=Bounds(0, 1, low_open=True)),
    _o("crop_size_noise", FLOAT, 0.0, DATA,
       "Training: add Gaussian noise of this standard deviation (pixels) to each crop side, rounded, clamped to "
       "[8, 2 input_size] (the notes' 'Gaussian noise on the crop size'); 0 = off.", bounds=NON_NEGATIVE),
    _o("eval_random_crop_prob", FLOAT, 0.0, DATA,
       "Evaluation: with this probability per frame, centre-crop it to eval_random_crop_size then resize back (the "
       "notes' RandomCenterCrop magnification); 0 = off.", bounds=UNIT_INTERVAL, evaluation="evaluation views"),
    _o("eval_random_crop_size", INT, 200, DATA, "Crop side (pixels at input_size) of eval_random_crop_prob.",
       bounds=Bounds(1, "input_size"), evaluation="evaluation views",
       read_with=Check("'eval_random_crop_prob' > 0", ("eval_random_crop_prob",),
                       lambda c: c.eval_random_crop_prob > 0)),
    _o("magnify_frame", INT, -1, DATA,
       "One-in-sequence magnification: centre-crop only image k (0-based in the sequence) to magnify_size, "
       "then resize back, in every split (the notes' OneInSequenceMagnification); -1 = off.",
       needs=Rule(Check("-1 (off) or an image index of the sequence (num_frames, crop_sizes, frame_crops)",
                        ("num_frames", "crop_sizes", "frame_crops"),
                        lambda c: -1 <= c.magnify_frame < sequence_length(c)),
                  when=ALWAYS)),
    _o("magnify_size", INT, 175, DATA, "Crop side (pixels at input_size) of magnify_frame.",
       bounds=Bounds(1, "input_size"),
       read_with=Check("'magnify_frame' >= 0", ("magnify_frame",), lambda c: c.magnify_frame >= 0)),
    _o("time_order", STR, "forward", DATA,
       "Training frame order: forward; reverse = the window reversed with probability 0.5 (the notes' 'reverses "
       "the time'); random_walk = frames drawn by a random walk from the centre, a step forward with probability "
       "forward_bias (the original's random_walk).", choices=("forward", "reverse", "random_walk")),
    _o("forward_bias", FLOAT, 0.7, DATA, "Probability of a forward step of time_order random_walk.",
       bounds=UNIT_INTERVAL, read_with=Is("time_order", "random_walk")),
    _o("window", STR, "centred", DATA,
       "Which frame of the window is labelled: centred (t-k..t+k) or last (t-2k..t: predict the last frame, the "
       "original's future_prediction).", choices=("centred", "last")),
    _o("missing_frames", STR, "error", DATA,
       "A missing or unreadable frame: stop with an error naming the file, or skip the sample (counted and reported).",
       choices=("error", "skip"), evaluation="test data (missing frames: error or skip)"),
    _o("skip_validation", BOOL, False, DATA,
       "Do not read every frame header again before training when these split / label files (same paths, sizes and "
       "modification times) were validated before (cached in <output_dir>/.data_validation); without such a "
       "result the data is validated anyway.", evaluation="execution", resume="run control (the data is the same)"),
    _o("front_facing", STR, "yaw", DATA,
       "Definition of the front-facing subset: |yaw| <= front_facing_degrees; also |pitch| <= it; or within it of "
       "the camera direction.", choices=("yaw", "yaw_pitch", "camera"), evaluation="test subsets"),
    _o("front_facing_degrees", FLOAT, 20.0, DATA, "Threshold of the front-facing subset in degrees.",
       bounds=NON_NEGATIVE, evaluation="test subsets"),
    _o("rtgene_face", STR, "face_before_inpainting", DATA,
       "RT-GENE face crops: <subject>/original/face_before_inpainting/ (the original trainer's default), the "
       "inpainted ones (inpainted/face/), or original/face/.",
       choices=("face_before_inpainting", "inpainted", "original"), read_with=Is("dataset", "rtgene")),
    _o("rtgene_folds", INT_LIST, [1, 2, 3], DATA, "RT-GENE test folds to run (1..3); the mean is reported.",
       bounds=Bounds(1, 3), read_with=Is("dataset", "rtgene"), evaluation="folds evaluated",
       needs=Rule(Check("distinct folds", (), lambda c: len(set(c.rtgene_folds)) == len(c.rtgene_folds)), when=ALWAYS)),
    _o("batch_size", INT, 64, DATA, "Samples per optimisation step.", bounds=POSITIVE, evaluation="evaluation batch"),
    _o("num_workers", INT, 4, DATA,
       "DataLoader worker processes (0 = load in the main process); training workers persist across epochs.",
       bounds=NON_NEGATIVE, evaluation="execution", resume="workers"),
    # --- model ---------------------------------------------------------------------------------------------------
    _o("backbone_layers", INT_LIST, [2, 2, 2, 2], MODEL, "Blocks per ResNet layer ([2,2,2,2] = ResNet-18).",
       bounds=POSITIVE),
    _o("backbone_block", STR, "basic", MODEL, "ResNet block type.", choices=("basic", "bottleneck")),
    _o("backbone_inplanes", INT, 64, MODEL, "Stem width of the ResNet (64 = torchvision).", bounds=POSITIVE),
    _o("backbone_fc", INT, 1000, MODEL,
       "Width of the backbone's own fc layer (1000: the ImageNet classifier, as Gaze360's code, so ImageNet weights "
       "fill it); 0 = the pooled features directly.", bounds=NON_NEGATIVE),
    _o("feature_size", INT, 256, MODEL,
       "Per-image feature size: backbone fc -> ReLU -> Linear(feature_size) (the original's fc1 -> ReLU -> fc2).",
       bounds=POSITIVE),
    _o("feature_relu", BOOL, False, MODEL,
       "ReLU after the feature layer, before the head (the original's static models have it; its LSTM and "
       "multi-crop models do not)."),
    _o("spatial_transformer", BOOL, False, MODEL,
       "A spatial transformer (affine, initialised to identity) in front of the backbone: this project's own "
       "design (the original's was never published)."),
    _o("stn_lr_multiplier", FLOAT, 1.0, MODEL,
       "Learning rate of the spatial transformer = lr x this (the notes found a lower one better).",
       bounds=NON_NEGATIVE, read_with=On("spatial_transformer")),
    _o("temporal", STR, "lstm", MODEL,
       "How the sequence of images is fused: lstm; maxpool = element-wise max of the feature vectors (the "
       "original's MAX); spatial_max = max of the trunk's feature maps before pooling (the original's SPATIAL_MAX, "
       "its published MSA); attention = softmax-weighted sum of the feature vectors (attention_dim); none = one "
       "image.", choices=("lstm", "maxpool", "spatial_max", "attention", "none"),
       needs=Rule(Check("a sequence of one image (num_frames, crop_sizes, frame_crops)",
                        ("num_frames", "crop_sizes", "frame_crops"), lambda c: sequence_length(c) == 1),
                  "'none' takes one image per sample; use lstm or maxpool", when=("none",))),
    _o("attention_dim", INT, 128, MODEL, "Latent width of temporal: attention (the notes' Attn_dim).",
       bounds=POSITIVE, read_with=Is("temporal", "attention")),
    _o("lstm_layers", INT, 2, MODEL, "LSTM layers.", bounds=POSITIVE),
    _o("lstm_bidirectional", BOOL, True, MODEL, "Bidirectional LSTM (the original defaulted to off by mistake)."),
    _o("target_index", STR, "middle", MODEL,
       "Which LSTM output predicts: the middle (L // 2) or the last (L - 1) of the sequence, or the last crop of the "
       "central frame (frame_crops: all).", choices=("middle", "last", "central_frame_last"),
       needs=Rule(Is("frame_crops", "all"), when=("central_frame_last",))),
    _o("target", STR, "sincos", MODEL,
       "Output: (yaw, pitch) = (pi tanh, pi/2 tanh), or (sin yaw, cos yaw, sin pitch) (tanh), or sincos45 = those "
       "plus sin/cos(yaw + 45 deg) (the notes' extra targets); plus sigma.",
       choices=("yawpitch", "sincos", "sincos45")),
    _o("sigma_scale", STR, "pi", MODEL,
       "sigma = pi sigmoid (the original, most models) or one = plain sigmoid (the original's StaticSC).",
       choices=("pi", "one")),
    _o("with_sigma", BOOL, True, MODEL,
       "An uncertainty output; false = the original RT-GENE model without it (use loss mse).",
       needs=Rule(Is("loss", "mse"), "with_sigma false leaves no sigma for the pinball loss", when=(False,))),
    _o("yaw_decoding", STR, "original", MODEL,
       "Yaw from (sin, cos): the original's average of a cos-based and a sin-based estimate, or atan2 (this "
       "project's: wrap-safe and equal on unit vectors, while the average drifts up to ~40 deg on non-unit outputs).",
       choices=("original", "atan2"), evaluation="output decoding"),
    # --- losses --------------------------------------------------------------------------------------------------
    _o("loss", STR, "sincos_pinball", LOSS,
       "pinball (quantiles around output -/+ sigma), sincos_pinball (pinball + the unit-norm term on (sin, cos) "
       "yaw), or mse (sigma unused).", choices=("pinball", "sincos_pinball", "mse"),
       needs=Rule(Is("target", "sincos", "sincos45"), "it regularises (sin yaw, cos yaw)", when=("sincos_pinball",))),
    _o("pinball_epsilon", FLOAT, 0.0, LOSS,
       "Epsilon-insensitive pinball: residuals within epsilon of the quantile bound cost nothing (the notes' "
       "'epsilon pinball loss'); 0 = the plain pinball loss.", bounds=NON_NEGATIVE, read_with=Not(Is("loss", "mse"))),
    _o("pinball_quantile", FLOAT, 0.1, LOSS, "Lower quantile q of the pinball loss; the upper one is 1 - q.",
       bounds=Bounds(0, 0.5, low_open=True, high_open=True), read_with=Not(Is("loss", "mse"))),
    _o("sincos_norm_weight", FLOAT, 0.1, LOSS,
       "w in (1 - w) pinball + w MSE(||(sin yaw, cos yaw)||, 1) of sincos_pinball.",
       bounds=UNIT_INTERVAL, read_with=Is("loss", "sincos_pinball")),
    # --- training ------------------------------------------------------------------------------------------------
    _o("lr", FLOAT, 1e-4, TRAIN, "Adam learning rate.",
       bounds=NON_NEGATIVE, needs=Rule(Given("eval_weights"), LR_ZERO, when=(0.0,), warning=True)),
    _o("weight_decay", FLOAT, 0.0, TRAIN, "Adam (L2) weight decay.", bounds=NON_NEGATIVE),
    _o("adam_beta1", FLOAT, 0.9, TRAIN, "Adam beta1.", bounds=BELOW_ONE),
    _o("adam_beta2", FLOAT, 0.999, TRAIN, "Adam beta2 (the original RT-GENE trainer: 0.95).", bounds=BELOW_ONE),
    _o("freeze_backbone_epochs", INT, 0, TRAIN,
       "Train with the backbone's parameters (trunk, fc, feature layer) frozen for this many epochs, then unfreeze "
       "them (the notes' 'freeze the base network, unfreeze at epoch k'; BatchNorm statistics still update, as in the "
       "original's freezing); 0 = never frozen.", bounds=NON_NEGATIVE),
    _o("early_stopping_patience", INT, 0, TRAIN,
       "Stop when the validation error has not improved for this many epochs (the original RT-GENE trainer: 10); "
       "0 = off.", bounds=NON_NEGATIVE, resume="stopping rule"),
    _o("epochs", INT, 100, TRAIN, "Training epochs; the epoch with the lowest validation error is kept as best.pt.",
       bounds=POSITIVE, resume="length of the run (extend it)"),
    _o("grad_clip", FLOAT, 0.0, TRAIN, "Max global gradient norm (0 = no clipping, as the original).",
       bounds=NON_NEGATIVE),
    _o("amp", STR, "off", TRAIN,
       "Mixed precision: off = fp32; fp16 = autocast float16 with a GradScaler; bf16 = autocast bfloat16.",
       choices=("off", "fp16", "bf16"), evaluation="execution"),
    _o("save_every", INT, 10, TRAIN, "Keep a numbered checkpoint every N epochs (last.pt is always kept).",
       bounds=POSITIVE, resume="saving cadence"),
    # --- evaluation ----------------------------------------------------------------------------------------------
    _o("eval_batch_size", INT, None, EVAL, "Batch size for evaluation; unset = batch_size.", nullable=True,
       bounds=POSITIVE, evaluation="evaluation batch", resume="evaluation batch"),
    _o("magnification_deltas", INT_LIST, [0, 10, 20, 30, 40, 50, 60, 70, 80], EVAL,
       "Analyses: evaluate with an extra centre crop of input_size - delta pixels (then resized back) for each delta; "
       "the oracle picks per sample the best of these crops.",
       bounds=NON_NEGATIVE, evaluation="analysis of the weights"),
    # --- logging -------------------------------------------------------------------------------------------------
    *logging_options(print_every=20, group=LOG),
)


def validate(config) -> None:
    """The Gaze360 checks: every rule the declarations carry (engine.option_rules), then whether the model can be
    built (its own checks, engine.config.check_buildable), before any data is read: this trainer builds its model
    from the options it is given, evaluation included."""
    from engine.config import check_buildable
    from engine.option_rules import check_rules

    check_rules(config, config.table.options)
    check_buildable(config)


def _build_model(config):
    from gaze360.models import build_model  # torch only when checking

    return build_model(config)


GAZE360 = OptionTable(
    options=OPTIONS,
    groups=GROUPS,
    prog="gaze360_main.py",
    description="3D gaze estimation on Gaze360 / RT-GENE with multi-crop sin-cos LSTM models: train, resume, "
                "evaluate, analyse. Precedence: declared defaults < YAML files < flags.",
    yaml_flags=(("yaml", "YAML file (flat, or keys grouped under any section names)"),),
    validate=validate,
    build=_build_model,
)

OPTIONS_START = "<!-- gaze360-options:start (generated by python -m gaze360.options) -->\n"
OPTIONS_END = "<!-- gaze360-options:end -->"

if __name__ == "__main__":  # `python -m gaze360.options` rewrites the Gaze360 part of docs/options.md
    from engine.options import OPTIONS_REFERENCE

    rewrite_block(OPTIONS_REFERENCE, markdown_table(OPTIONS, GROUPS), OPTIONS_START, OPTIONS_END)

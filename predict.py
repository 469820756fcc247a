"""Predict gaze on your own images and videos with a trained checkpoint.

    python predict.py --weights W --image IMG --head_box x1,y1,x2,y2 [--head_box ...] [--out DIR]
    python predict.py --weights W --frames DIR --head_boxes person1.txt person2.txt [--out DIR]
    python predict.py --weights W --video VIDEO --head_boxes person1.txt [--out DIR]

Head boxes are in pixels; head-box files hold `frame,xmin,ymin,xmax,ymax` lines (VideoAttentionTarget format).
The model and sampler follow the checkpoint's configuration unless overridden. See README, "Predict on your own
images and videos".
"""
from __future__ import annotations

import argparse
import sys

from engine.config import ConfigError
from engine.options import OPTIONS_BY_NAME
from inference import ANIMATION_FORMATS

OVERRIDES = ("device", "sampler", "sample_time_steps", "sample_k", "ddim_eta", "seed", "amp")  # options of engine/options.py a flag may override


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="checkpoint (e.g. output/run1/last.pt) or weight file")
    parser.add_argument("--config", nargs="+", default=(), metavar="YAML",
                        help="YAML file(s) the weights were trained with; only for weight files that store no "
                             "configuration (checkpoints written by main.py store theirs)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="one image; give its people with --head_box")
    source.add_argument("--frames", help="folder of frames named as in the head-box files")
    source.add_argument("--video", help="a video; its frames are named 00000001.jpg, 00000002.jpg, ... (as "
                                        "`ffmpeg -i VIDEO %%08d.jpg` names them). GIF/WebP always; MP4 and others "
                                        "need `pip install av` or `pip install imageio-ffmpeg`")
    parser.add_argument("--head_box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="with --image: a head box in pixels; repeat for several people (person1, person2, ...)")
    parser.add_argument("--head_boxes", nargs="+", default=[], metavar="FILE",
                        help="with --frames / --video: one head-box file per person (lines frame,xmin,ymin,xmax,ymax "
                             "in pixels); the person is named after the file")
    parser.add_argument("--out", default="output/predict", help="output folder [default: output/predict]")
    parser.add_argument("--skip_missing_frames", action="store_true",
                        help="skip (and list in predictions.json) frames named in a head-box file that do not exist, "
                             "instead of stopping with an error")
    parser.add_argument("--animation", choices=ANIMATION_FORMATS, default="gif",
                        help="animation of a sequence: gif (Pillow), mp4 (needs PyAV) or none [default: gif]")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second of the animation [default: 10]")
    parser.add_argument("--animation_width", type=int, default=640,
                        help="width in pixels the animation's frames are scaled down to (0 = full size) [default: 640]")
    for name in OVERRIDES:
        option = OPTIONS_BY_NAME[name]
        parser.add_argument(f"--{name}", choices=option.choices, default=None,
                            help=f"{option.help} [default: the checkpoint's]".replace("%", "%%"))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.image and args.head_boxes:
        parser.error("--head_boxes (files) go with --frames or --video; with --image give --head_box x1,y1,x2,y2")
    if not args.image and args.head_box:
        parser.error("--head_box goes with --image; with --frames or --video give one --head_boxes file per person")
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    from inference.pipeline import predict_image, predict_sequence  # imported late so --help stays fast
    from inference.predictor import Predictor

    try:
        predictor = Predictor(args.weights, args.config, overrides)
        if predictor.load_report.unused:  # checkpoint entries the model has no place for are always reported
            print(predictor.load_report.summary())
        if args.image:
            summary = predict_image(predictor, args.image, args.head_box, args.out)
        else:
            summary = predict_sequence(predictor, args.head_boxes, args.out, frames_dir=args.frames, video=args.video,
                                       skip_missing_frames=args.skip_missing_frames, animation=args.animation,
                                       fps=args.fps, animation_width=args.animation_width)
    except (ConfigError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"predict.py: error: {error}", file=sys.stderr)
        return 2
    skipped = f", {len(summary['frames_skipped'])} frames skipped" if summary["frames_skipped"] else ""
    print(f"predicted {summary['frames']} frame(s){skipped} with {summary['sampler']} "
          f"({summary['sample_time_steps']} steps, K = {summary['sample_k']}) on {summary['device']}; "
          f"wrote {args.out}/predictions.csv, predictions.json, overlays/"
          + (f", {summary['animation']}" if summary["animation"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Predict gaze on your own images and videos with a trained checkpoint.

    python predict.py --weights W --video VIDEO [--out DIR]          # heads detected (MTCNN) and tracked
    python predict.py --weights W --frames DIR | --image IMG [--out DIR]
    python predict.py --weights W --image IMG --head_box x1,y1,x2,y2 [--head_box ...]
    python predict.py --weights W --frames DIR | --video VIDEO --head_boxes person1.txt person2.txt

Head boxes are in pixels; head-box files hold `frame,xmin,ymin,xmax,ymax` lines (VideoAttentionTarget format).
The model and sampler follow the checkpoint's configuration unless overridden. See README, "Predict on your own
video".
"""
from __future__ import annotations

import argparse
import sys

from engine.config import ConfigError
from engine.options import OPTIONS_BY_NAME
from inference import ANIMATION_FORMATS

DETECTION_OPTIONS = ("detector", "min_head_score", "min_head_size", "detect_width", "track_min_iou",
                     "track_max_missed")
SEQUENCE_OPTIONS = ("every_nth_frame", "start", "end", "smooth_boxes", "smooth_points", "animation", "fps",
                    "animation_width", "overlays", "skip_missing_frames", "track_min_iou", "track_max_missed")
OVERRIDES = ("device", "sampler", "sample_time_steps", "sample_k", "ddim_eta", "seed", "amp")  # options of engine/options.py a flag may override


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="checkpoint (e.g. output/run1/last.pt), weight file, or "
                                                         "Hub-style folder / hf-hub:OWNER/NAME (docs/hub.md)")
    parser.add_argument("--config", nargs="+", default=(), metavar="YAML",
                        help="YAML file(s) the weights were trained with; only for weight files that store no "
                             "configuration (checkpoints written by main.py store theirs)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="one image")
    source.add_argument("--frames", help="folder of frames (all its images in natural name order, or those named in "
                                         "the head-box files)")
    source.add_argument("--video", help="a video (MP4, MOV, AVI, MKV, GIF, ... read with PyAV); its frames are named "
                                        "00000001.jpg, 00000002.jpg, ... (as `ffmpeg -i VIDEO %%08d.jpg` names them)")
    parser.add_argument("--head_box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                        help="with --image: a head box in pixels; repeat for several people (person1, person2, ...). "
                             "Without head boxes, heads are detected")
    parser.add_argument("--head_boxes", nargs="+", default=[], metavar="FILE",
                        help="with --frames / --video: one head-box file per person (lines frame,xmin,ymin,xmax,ymax "
                             "in pixels); the person is named after the file. Without, heads are detected and tracked")
    detection = parser.add_argument_group("head detection and tracking (without --head_box / --head_boxes)")
    detection.add_argument("--detector", default="mtcnn", metavar="mtcnn|yolo:PATH",
                           help="mtcnn: MTCNN faces (facenet-pytorch, weights in the wheel) expanded to head boxes; "
                                "yolo:PATH: an Ultralytics head detector file (needs `pip install ultralytics`) "
                                "[default: mtcnn]")
    detection.add_argument("--min_head_score", type=float, default=0.95,
                           help="drop (and count) detections scoring below this [default: 0.95]")
    detection.add_argument("--min_head_size", type=float, default=20.0,
                           help="drop (and count) head boxes whose shorter side is below this many pixels "
                                "[default: 20]")
    detection.add_argument("--detect_width", type=int, default=0,
                           help="detect on frames scaled down to this width in pixels (faster on large frames; boxes "
                                "are scaled back; 0 = full size) [default: 0]")
    detection.add_argument("--track_min_iou", type=float, default=0.3,
                           help="smallest IoU of a detection with a track's last box to continue it [default: 0.3]")
    detection.add_argument("--track_max_missed", type=int, default=5,
                           help="processed frames a track survives without a detection [default: 5]")
    sequence = parser.add_argument_group("sequences")
    sequence.add_argument("--every_nth_frame", type=int, default=1,
                          help="with detection: process the first selected frame and then every n-th [default: 1]")
    sequence.add_argument("--start", type=float, default=0.0, help="video: first second to process [default: 0]")
    sequence.add_argument("--end", type=float, default=None, help="video: stop at this second [default: the end]")
    sequence.add_argument("--smooth_boxes", type=int, default=1,
                          help="centred moving average of each person's head box over this many processed frames "
                               "(odd; 1 = off; the VideoAttentionTarget loader uses 11) [default: 1]")
    sequence.add_argument("--smooth_points", type=int, default=1,
                          help="centred moving average of each person's predicted point over this many processed "
                               "frames (odd; 1 = off) [default: 1]")
    parser.add_argument("--trust_legacy_checkpoint", action="store_true",
                        help="allow a trusted --weights file that needs full unpickling (e.g. an original DiffusionGaze "
                             "checkpoint); unpickling runs any code the file holds (docs/trust.md)")
    parser.add_argument("--gaze360_weights", metavar="FILE",
                        help="a checkpoint of the Gaze360 trainer (gaze360_main.py): adds each head's 3D gaze (yaw, "
                             "pitch, uncertainty), drawn as a red arrow and written beside the 2D target")
    parser.add_argument("--out", default="output/predict",
                        help="output folder: new or empty (an earlier prediction there needs --overwrite; a folder "
                             "holding anything else is refused) [default: output/predict]")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier prediction in --out (removed once the new one is complete)")
    parser.add_argument("--skip_missing_frames", action="store_true",
                        help="skip (and list in predictions.json) frames named in a head-box file that do not exist, "
                             "instead of stopping with an error")
    parser.add_argument("--animation", choices=("auto", *ANIMATION_FORMATS), default="auto",
                        help="annotated animation of a sequence: mp4 (H.264, PyAV), gif (Pillow) or none; auto: mp4 "
                             "for a video, gif for a frames folder [default: auto]")
    parser.add_argument("--fps", type=float, default=None,
                        help="frames per second of the animation [default: a video's own rate / --every_nth_frame; "
                             "10 for a frames folder]")
    parser.add_argument("--animation_width", type=int, default=None,
                        help="width in pixels the animation's frames are scaled down to (0 = full size) "
                             "[default: 640 for a GIF, full size for an MP4]")
    parser.add_argument("--overlays", choices=("auto", "on", "off"), default="auto",
                        help="one overlay PNG per person per frame; auto: on for images and frame folders, off for "
                             "videos (the annotated MP4 shows them) [default: auto]")
    for name in OVERRIDES:
        option = OPTIONS_BY_NAME[name]
        registry = callable(option.choices)  # a registry's names (the sampler's): checked with the configuration
        parser.add_argument(f"--{name}", choices=None if registry else option.choices, default=None,
                            metavar="NAME" if registry else None,
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
    from inference.outputs import PredictionFolder
    from inference.pipeline import HeadFinder, predict_image, predict_sequence  # imported late: --help stays fast
    from inference.predictor import Predictor
    from inference.tracking import IoUTracker

    detect = not (args.head_box or args.head_boxes)
    # Options that would have no effect are refused rather than silently ignored.
    changed = [name for name in vars(args) if getattr(args, name) != parser.get_default(name)]
    if not detect and (unused := [n for n in changed if n in DETECTION_OPTIONS]):
        parser.error(f"--{unused[0]} applies when heads are detected; head boxes were given")
    if args.detect_width < 0:
        parser.error(f"--detect_width: expected a width in pixels >= 0 (0 = full size), found {args.detect_width}")
    if args.image and (unused := [n for n in changed if n in SEQUENCE_OPTIONS]):
        parser.error(f"--{unused[0]} applies to --frames / --video, not to one --image")
    overlays = {"auto": None, "on": True, "off": False}[args.overlays]
    output = PredictionFolder(args.out, overwrite=args.overwrite)  # written whole, then put in place of --out
    try:
        predictor = Predictor(args.weights, args.config, overrides, trust_legacy=args.trust_legacy_checkpoint)
        if predictor.load_report.unused:  # checkpoint entries the model has no place for are always reported
            print(predictor.load_report.summary())
        finder = tracker = gaze3d = None
        if detect:
            from inference.detection import build_detector

            finder = HeadFinder(build_detector(args.detector, str(predictor.device)), args.detector,
                                args.min_head_score, args.min_head_size, args.detect_width)
            tracker = IoUTracker(args.track_min_iou, args.track_max_missed)
        if args.gaze360_weights:
            from inference.gaze3d import Gaze3DEstimator

            gaze3d = Gaze3DEstimator(args.gaze360_weights, predictor.device)
        output.open()  # before anything is written: a folder not new, empty or (--overwrite) a prediction is refused
        if args.image:
            summary = predict_image(predictor, args.image, args.head_box, output.path, finder=finder, gaze3d=gaze3d)
        else:
            summary = predict_sequence(
                predictor, output.path, head_box_files=args.head_boxes, frames_dir=args.frames, video=args.video,
                finder=finder, gaze3d=gaze3d, tracker=tracker, skip_missing_frames=args.skip_missing_frames,
                animation=args.animation, fps=args.fps, animation_width=args.animation_width,
                every_nth_frame=args.every_nth_frame, start=args.start, end=args.end, smooth_boxes=args.smooth_boxes,
                smooth_points=args.smooth_points, overlays=overlays)
        output.commit()
    except (ConfigError, ValueError, FileNotFoundError, ModuleNotFoundError, RuntimeError) as error:
        print(f"predict.py: error: {error}", file=sys.stderr)
        return 2
    finally:
        output.close()  # what a failed prediction wrote is removed; --out is as it was
    skipped = f", {len(summary['frames_skipped'])} frames skipped" if summary["frames_skipped"] else ""
    if finder is not None:
        counts = finder.counts
        print(f"{args.detector}: kept {counts.kept} head detections; dropped {counts.below_min_score} below "
              f"--min_head_score {args.min_head_score} and {counts.below_min_size} below --min_head_size "
              f"{args.min_head_size} px")
    people = summary["people"] if isinstance(summary["people"], int) else len(summary["people"])
    print(f"predicted {summary['frames']} frame(s){skipped}, {people} {'people' if args.image else 'tracks'}, with "
          f"{summary['sampler']} ({summary['sample_time_steps']} steps, K = {summary['sample_k']}) on "
          f"{summary['device']}; wrote {args.out}/predictions.csv, predictions.json"
          + (", tracks/" if not args.image else "") + (f", {summary['animation']}" if summary["animation"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

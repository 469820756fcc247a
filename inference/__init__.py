"""Prediction on a researcher's own images and videos with a trained checkpoint (`predict.py` is the command line).

`predictor` loads a checkpoint with its own configuration and predicts heatmaps, gaze points and in/out scores;
`sources` reads images, frames, videos (PyAV) and head-box files; `detection` finds heads (MTCNN, or an Ultralytics
head model) and `tracking` links them across frames; `gaze3d` adds a Gaze360 model's 3D gaze; `outputs` draws
overlays and writes the tables and the animation; `pipeline` ties them together for one image or a frame sequence;
`onnx_runner` exports a model to ONNX and runs the export on onnxruntime; `app` is the local web demo
(`python -m inference.app --weights W`, its page in `web/`).
"""

ANIMATION_FORMATS = ("gif", "mp4", "none")  # a sequence's animation: Pillow GIF, H.264 MP4 through PyAV, or none

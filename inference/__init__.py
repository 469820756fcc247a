"""Prediction on a researcher's own images and videos with a trained checkpoint (`predict.py` is the command line).

`predictor` loads a checkpoint with its own configuration and predicts heatmaps, gaze points and in/out scores;
`sources` reads images, frames and head-box files; `outputs` draws overlays and writes the tables and the animation;
`pipeline` ties them together for one image or a frame sequence.
"""

ANIMATION_FORMATS = ("gif", "mp4", "none")  # a sequence's animation: Pillow GIF, H.264 MP4 through PyAV, or none

"""Gaze360 / RT-GENE 3D gaze estimation from head crops: multi-crop ("multi-zoom") sin-cos LSTM models and their
analyses. Shares the project's configuration, checkpoint, logging and mixed-precision machinery (engine/)."""

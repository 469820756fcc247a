"""torch.hub entry points: build a trained gaze-following model from a checkpoint of this project.

    model = torch.hub.load("path/to/this/repo", "model", weights="output/run1/last.pt", source="local")
    predictor = torch.hub.load("path/to/this/repo", "predictor", weights="output/run1/last.pt", source="local")
    predictions = predictor.predict(image, [HeadBox("person1", np.array([x1, y1, x2, y2]), "my box")])

Both build the model as predict.py does: from the configuration stored in the checkpoint (or `config`, YAML files,
for a weight file without one), with the weights it is evaluated with (EMA when trained with ema_on).
"""
dependencies = ["torch", "torchvision", "timm", "numpy", "PIL", "yaml"]


def predictor(weights: str, config=(), **overrides):
    """An inference.predictor.Predictor: `.predict(image, head_boxes)`, `.model`, `.config`, `.formulation`.
    `overrides` are options of the configuration (device, sampler, sample_time_steps, sample_k, seed, ...)."""
    from inference.predictor import Predictor

    return Predictor(weights, [config] if isinstance(config, str) else config, overrides)


def model(weights: str, config=(), device: str = "cpu", **overrides):
    """The GazeDiffusionModel (gaze backbone, UNet, in/out head) in eval mode, with the checkpoint's weights; its
    configuration is `model.config`."""
    built = predictor(weights, config, device=device, **overrides)
    built.model.config = built.config
    return built.model

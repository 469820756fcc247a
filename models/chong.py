"""Chong et al. 2020 ("Detecting Attended Visual Targets in Video"; github.com/ejcgt/attention-target-detection):
the spatial model (GazeFollow) and the spatio-temporal model (VideoAttentionTarget, a ConvLSTM over a person's
consecutive frames), built on this project's `chong` gaze backbone (models/backbones.py: scene and face ResNets,
head-conditioned attention, the 2048 -> 512 encoder) and in/out head (models/inout.py), plus Chong's heatmap decoder.

Inputs (datasets/peer_transforms.py, as Chong's demo.py makes them): image [N, 3, 224, 224] and face crop
[N, 3, 224, 224] ImageNet-normalised, head channel [N, 1, 224, 224] (1 inside the head box). Outputs: the heatmap
[N, 1, 64, 64] (the decoder's last convolution, no sigmoid, as Chong's) and the in/out logit [N] (positive: target in
the frame; Chong's demo shows 1 - sigmoid as "out of frame"). Building from the released files:
pretrained/peer_files.py.

The spatio-temporal model keeps two quirks of Chong's code because its released weights were trained and
evaluated with them: its ResNet blocks and decoder skip their BatchNorms in a call that holds a single frame (a
block also normalises its shortcut a second time, `bn_ds`), so how frames are grouped into calls changes the
numbers; `run_tracks` feeds them as Chong's VideoAttentionTarget evaluation script does.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

from models.backbones import ChongGazeBackbone
from models.inout import InOutHead

INPUT_SIZE = 224
LAYERS = (3, 4, 6, 3, 2)  # both ResNets: ResNet-50 plus Chong's fifth layer
ENCODING_CHANNELS = 512
Hidden = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [num_layers, people, 512, 7, 7]


def _batch_norm_unless_single(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """Chong's spatio-temporal rule: a BatchNorm is applied only when the call holds more than one frame."""
    return norm(x) if x.shape[0] > 1 else x


class TemporalBottleneck(Bottleneck):
    """The spatio-temporal model's ResNet block (Chong's BottleneckConvLSTM): torchvision's Bottleneck whose three
    BatchNorms are skipped for a single-frame call, and whose shortcut, when it has a projection, is normalised again
    by `bn_ds` (every block has `bn_ds`; only those with a projection use it, and only for several frames)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__(inplanes, planes, stride, downsample)
        self.bn_ds = nn.BatchNorm2d(planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(_batch_norm_unless_single(self.bn1, self.conv1(x)))
        out = self.relu(_batch_norm_unless_single(self.bn2, self.conv2(out)))
        out = _batch_norm_unless_single(self.bn3, self.conv3(out))
        shortcut = x
        if self.downsample is not None:
            shortcut = self.downsample(x)
            shortcut = _batch_norm_unless_single(self.bn_ds, shortcut)
        return self.relu(out + shortcut)


class ChongHeatmapDecoder(nn.Module):
    """Chong's decoder: 512 x 7 x 7 -> ConvTranspose(3, /2) 256 x 15 x 15 -> ConvTranspose(3, /2) 128 x 31 x 31 ->
    ConvTranspose(4, /2) 1 x 64 x 64, each followed by BatchNorm and ReLU, then a 1x1 convolution (`conv4`): the
    heatmap [N, 1, 64, 64], unbounded. `single_frame_rule`: skip the BatchNorms in a call of one frame (the
    spatio-temporal model)."""

    def __init__(self, in_channels: int = ENCODING_CHANNELS, single_frame_rule: bool = False):
        super().__init__()
        self.single_frame_rule = single_frame_rule
        self.deconv1 = nn.ConvTranspose2d(in_channels, 256, kernel_size=3, stride=2)
        self.deconv_bn1 = nn.BatchNorm2d(256)
        self.deconv2 = nn.ConvTranspose2d(256, 128, kernel_size=3, stride=2)
        self.deconv_bn2 = nn.BatchNorm2d(128)
        self.deconv3 = nn.ConvTranspose2d(128, 1, kernel_size=4, stride=2)
        self.deconv_bn3 = nn.BatchNorm2d(1)
        self.conv4 = nn.Conv2d(1, 1, kernel_size=1)
        for module in self.modules():  # Chong's initialisation: N(0, 2 / (k * k * out_channels))
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                fan = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan))

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        x = encoding
        for deconv, norm in ((self.deconv1, self.deconv_bn1), (self.deconv2, self.deconv_bn2),
                             (self.deconv3, self.deconv_bn3)):
            x = deconv(x)
            x = _batch_norm_unless_single(norm, x) if self.single_frame_rule else norm(x)
            x = F.relu(x)
        return self.conv4(x)


def _chong_backbone(block: type[nn.Module]) -> ChongGazeBackbone:
    return ChongGazeBackbone(LAYERS, LAYERS, 64, 64, INPUT_SIZE, ENCODING_CHANNELS, block=block)


class ChongSpatial(nn.Module):
    """Chong et al.'s spatial model (their ModelSpatial: `model_gazefollow.pt`, `model_demo.pt`).

    forward(image, head_channel, face) -> (heatmap [N, 1, 64, 64], in/out logit [N]); BatchNorms in eval mode make
    each person's output independent of the others in the batch."""

    kind = "spatial"

    def __init__(self):
        super().__init__()
        self.gaze_backbone = _chong_backbone(Bottleneck)
        self.inout_head = InOutHead(self.gaze_backbone.feature_channels, self.gaze_backbone.feature_side ** 2)
        self.heatmap_decoder = ChongHeatmapDecoder()

    def forward(self, image: torch.Tensor, head_channel: torch.Tensor,
                face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.gaze_backbone(image, head_channel, face)
        return self.heatmap_decoder(features["scene_encoding"]), self.inout_head(features["scene_face_feat"])


class ConvLSTM(nn.Module):
    """A stacked convolutional LSTM over packed sequences (the ConvLSTM library Chong et al. use): gates = conv(x,
    W_ih) + conv(h, W_hh) with 'same' padding, split into input, forget, cell and output gates; c' = f c + i g,
    h' = o tanh(c'). Parameters `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}` as theirs (and
    torch's LSTM); dropout between layers in training."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3, num_layers: int = 1,
                 dropout: float = 0.0):
        super().__init__()
        self.hidden_channels, self.num_layers, self.dropout = hidden_channels, num_layers, dropout
        self.padding = kernel_size // 2
        bound = 1.0 / math.sqrt(hidden_channels)
        for layer in range(num_layers):
            inputs = in_channels if layer == 0 else hidden_channels
            for name, shape in ((f"weight_ih_l{layer}", (4 * hidden_channels, inputs, kernel_size, kernel_size)),
                                (f"weight_hh_l{layer}", (4 * hidden_channels, hidden_channels, kernel_size,
                                                         kernel_size)),
                                (f"bias_ih_l{layer}", (4 * hidden_channels,)),
                                (f"bias_hh_l{layer}", (4 * hidden_channels,))):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor, batch_sizes: Sequence[int], hidden: Hidden | None = None
                ) -> tuple[torch.Tensor, Hidden]:
        """x: the packed steps [sum(batch_sizes), C, h, w], time-major: step t holds the first batch_sizes[t]
        sequences (non-increasing: longest sequences first). hidden: (h, c) [num_layers, batch_sizes[0], H, h, w],
        None for zeros. Returns the last layer's packed outputs and each sequence's last (h, c)."""
        batch_sizes = [int(size) for size in batch_sizes]
        if sum(batch_sizes) != x.shape[0] or any(b > a for a, b in zip(batch_sizes, batch_sizes[1:])):
            raise ValueError(f"ConvLSTM: batch_sizes {batch_sizes} must be non-increasing and sum to the {x.shape[0]} "
                             "packed inputs")
        if hidden is None:
            zeros = x.new_zeros(self.num_layers, batch_sizes[0], self.hidden_channels, *x.shape[2:])
            hidden = (zeros, zeros)
        if tuple(hidden[0].shape[:2]) != (self.num_layers, batch_sizes[0]):
            raise ValueError(f"ConvLSTM: hidden state of shape {list(hidden[0].shape)} for {self.num_layers} layers "
                             f"and {batch_sizes[0]} sequences")
        final_h, final_c = [], []
        for layer in range(self.num_layers):
            weights = [getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            x, (h, c) = self._layer(x, batch_sizes, hidden[0][layer], hidden[1][layer], *weights)
            final_h.append(h)
            final_c.append(c)
            if self.dropout and layer < self.num_layers - 1:
                x = F.dropout(x, p=self.dropout, training=self.training)
        return x, (torch.stack(final_h), torch.stack(final_c))

    def _layer(self, x, batch_sizes, h, c, weight_ih, weight_hh, bias_ih, bias_hh):
        outputs, ended_h, ended_c = [], [], []
        offset = 0
        for size in batch_sizes:
            step = x[offset:offset + size]
            offset += size
            if size < h.shape[0]:  # the sequences that ended keep their last state
                ended_h.append(h[size:])
                ended_c.append(c[size:])
                h, c = h[:size], c[:size]
            gates = (F.conv2d(step, weight_ih, bias_ih, padding=self.padding)
                     + F.conv2d(h, weight_hh, bias_hh, padding=self.padding))
            input_gate, forget_gate, cell_gate, output_gate = gates.chunk(4, 1)
            c = torch.sigmoid(forget_gate) * c + torch.sigmoid(input_gate) * torch.tanh(cell_gate)
            h = torch.sigmoid(output_gate) * torch.tanh(c)
            outputs.append(h)
        ended_h.append(h)
        ended_c.append(c)
        return torch.cat(outputs), (torch.cat(ended_h[::-1]), torch.cat(ended_c[::-1]))


class ChongSpatioTemporal(nn.Module):
    """Chong et al.'s spatio-temporal model (their ModelSpatioTemporal: `model_videoatttarget.pt`, with 2 ConvLSTM
    layers): the spatial model's encoder, a ConvLSTM on the 512 x 7 x 7 encoding, the decoder; the in/out head sees
    the current frame only.

    forward(image, head_channel, face, hidden=None, batch_sizes=None) -> (heatmap [N, 1, 64, 64], in/out logit [N],
    hidden): the inputs are packed time-major as `ConvLSTM.forward` describes (`batch_sizes=None`: one time step of
    N people). One person's T consecutive frames: `batch_sizes=[1] * T` with that person's `hidden` from the previous
    call (None at the track's start). The call's frame count decides the single-frame BatchNorm rule.
    """

    kind = "spatiotemporal"

    def __init__(self, num_lstm_layers: int = 2):
        super().__init__()
        self.gaze_backbone = _chong_backbone(TemporalBottleneck)
        self.inout_head = InOutHead(self.gaze_backbone.feature_channels, self.gaze_backbone.feature_side ** 2)
        self.convlstm = ConvLSTM(ENCODING_CHANNELS, ENCODING_CHANNELS, kernel_size=3, num_layers=num_lstm_layers,
                                 dropout=0.5)
        self.heatmap_decoder = ChongHeatmapDecoder(single_frame_rule=True)

    def forward(self, image: torch.Tensor, head_channel: torch.Tensor, face: torch.Tensor, hidden: Hidden | None = None,
                batch_sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, Hidden]:
        features = self.gaze_backbone(image, head_channel, face)
        inout_logit = self.inout_head(features["scene_face_feat"])
        steps, hidden = self.convlstm(features["scene_encoding"],
                                      [image.shape[0]] if batch_sizes is None else batch_sizes, hidden)
        return self.heatmap_decoder(steps), inout_logit, hidden


def run_tracks(model: ChongSpatioTemporal, tracks: Sequence[dict[str, torch.Tensor]], chunk_size: int = 3,
               batch_size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every track through the spatio-temporal model as Chong's VideoAttentionTarget evaluation script feeds its
    sequences: `batch_size` tracks at a time (in the given order), sorted longest first and packed; `chunk_size`
    consecutive time steps per call; the hidden state zero at each track's start and carried from one call to the
    next within the track, never to another track.

    A track is one person's consecutive frames: {"image", "head_channel", "face"}, each [T, ...]. Returns, per track
    in the given order, (heatmaps [T, 1, 64, 64], in/out logits [T]).
    """
    if chunk_size < 1 or batch_size < 1:
        raise ValueError(f"chunk_size and batch_size must be >= 1, got {chunk_size} and {batch_size}")
    results: list = [None] * len(tracks)
    for first in range(0, len(tracks), batch_size):
        group = list(range(first, min(first + batch_size, len(tracks))))
        group.sort(key=lambda index: -tracks[index]["image"].shape[0])  # stable, as their collate's sort
        lengths = [tracks[index]["image"].shape[0] for index in group]
        heatmaps = {index: [] for index in group}
        inout = {index: [] for index in group}
        hidden = None
        for start in range(0, lengths[0], chunk_size):
            steps = range(start, min(start + chunk_size, lengths[0]))
            batch_sizes = [sum(length > t for length in lengths) for t in steps]
            members = [(group[k], t) for t, size in zip(steps, batch_sizes) for k in range(size)]
            inputs = {key: torch.stack([tracks[index][key][t] for index, t in members])
                      for key in ("image", "head_channel", "face")}
            if hidden is not None:
                hidden = (hidden[0][:, :batch_sizes[0]], hidden[1][:, :batch_sizes[0]])
            heatmap, logit, hidden = model(inputs["image"], inputs["head_channel"], inputs["face"], hidden,
                                           batch_sizes)
            for row, (index, _) in enumerate(members):
                heatmaps[index].append(heatmap[row])
                inout[index].append(logit[row])
        for index in group:
            results[index] = (torch.stack(heatmaps[index]), torch.stack(inout[index]))
    return results

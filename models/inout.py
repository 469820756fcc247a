"""The in/out head: predicts from the scene+face feature map whether the gaze target lies inside the frame."""

import torch
from torch import nn


class InOutHead(nn.Module):
    """Conv1x1(C -> 512)-BN-ReLU-Conv1x1(512 -> 1)-BN-ReLU, the h*w cells flattened, Linear(h*w -> 1).

    Chong et al.'s in/out branch (`compress_*_inout`, `fc_inout`); forward returns one logit per sample [B]
    (positive = gaze target in the frame).
    """

    def __init__(self, in_channels: int, feature_cells: int, hidden_channels: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden_channels)
        self.conv2 = nn.Conv2d(hidden_channels, 1, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(feature_cells, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, scene_face_feat: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(scene_face_feat)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.fc(out.flatten(1)).squeeze(1)

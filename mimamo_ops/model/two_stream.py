"""The MIMAMO-Net two-stream network, state_dict-compatible with ``model_weights.pth.tar`` (spec 4).

Attribute names are part of the checkpoint format: ``mlp.mlp.*``, ``phasenet.*``, ``transform.*``,
``rnns.*`` and ``classifier.*`` give exactly the 107 keys of spec 4.2.

The network is split into a per-frame part and a per-sequence part:

* :meth:`TwoStreamRNN.frame_features` maps one frame's inputs (its 2048-d ResNet feature and its phase
  differences) to a 256-d vector. It never mixes frames, so it can run on any batch of frames.
* :meth:`TwoStreamRNN.sequence_head` runs the GRU and the classifier. The original feeds a
  (snippets, 64, 256) tensor to a GRU with ``batch_first=False``, so the recurrence runs over the
  *snippets* of one batch, at each frame position separately (spec 4.4). This is kept on purpose: the
  published weights were trained that way.

:meth:`TwoStreamRNN.forward` composes both and takes the original's inputs.
"""
from typing import Sequence

import torch
from torch import nn

RGB_FEATURE_SIZE = 2048
HIDDEN_SIZE = 256
NUM_OUTPUTS = 2  # (valence, arousal), spec 4.5


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convs, the second with stride 2, each followed by BatchNorm and ReLU (spec 4.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, stride=2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MLP(nn.Module):
    """The spatial stream: 2048 -> 256 -> 256, Linear then BatchNorm then ReLU (spec 4.1)."""

    def __init__(self, hidden_units: Sequence[int] = (RGB_FEATURE_SIZE, HIDDEN_SIZE, HIDDEN_SIZE), dropout: float = 0.3):
        super().__init__()
        layers = []
        for in_size, out_size in zip(hidden_units[:-1], hidden_units[1:]):
            layers += [nn.Dropout(dropout), nn.Linear(in_size, out_size), nn.BatchNorm1d(out_size), nn.ReLU(inplace=True)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        """rgb: float32 (F, 2048) -> float32 (F, 256)."""
        return self.mlp(rgb)


class PhaseNet(nn.Module):
    """The temporal stream on the two pyramid levels of phase differences (spec 4.1, 4.3)."""

    def __init__(self, num_channels: int = 24, dropout: float = 0.3):
        super().__init__()
        self.conv_net = nn.ModuleList(
            [
                _conv_block(num_channels, 64),
                _conv_block(64 + num_channels, 128),
                _conv_block(128, 256),
            ]
        )
        self.dropout = nn.Dropout2d(0.2)
        self.avgpool = nn.AvgPool2d(6)
        self.fc = nn.Sequential(
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(256),
            nn.Dropout(dropout),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(256),
            nn.Dropout(dropout),
        )
        # Registered by the original and present in the checkpoint, but never called (feature=True).
        self.classifier = nn.Sequential(nn.Linear(256, 1), nn.BatchNorm1d(1, eps=1e-6))

    def forward(self, phase_0: torch.Tensor, phase_1: torch.Tensor) -> torch.Tensor:
        """phase_0: float32 (F, 24, 48, 48), phase_1: float32 (F, 24, 24, 24), radians -> float32 (F, 256)."""
        x = self.conv_net[0](phase_0)
        x = torch.cat([x, phase_1], dim=1)
        x = self.dropout(self.conv_net[1](x))
        x = self.dropout(self.conv_net[2](x))
        x = self.avgpool(x).flatten(1)
        return self.fc(x)


class TwoStreamRNN(nn.Module):
    """MIMAMO-Net: spatial MLP + PhaseNet -> transform -> bidirectional GRU -> (valence, arousal).

    Args:
        num_phase: phase differences per pyramid band (12); the checkpoint fixes it.
        dropout: dropout before the classifier (inactive in eval mode).
    """

    def __init__(self, num_phase: int = 12, dropout: float = 0.5):
        super().__init__()
        self.mlp = MLP()
        self.phasenet = PhaseNet(num_channels=2 * num_phase)
        self.transform = nn.Sequential(
            nn.Linear(2 * HIDDEN_SIZE, HIDDEN_SIZE),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(HIDDEN_SIZE),
            nn.Dropout(dropout),
        )
        self.rnns = nn.GRU(HIDDEN_SIZE, HIDDEN_SIZE // 2, num_layers=2, bidirectional=True, dropout=0.3)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HIDDEN_SIZE, NUM_OUTPUTS), nn.BatchNorm1d(NUM_OUTPUTS))

    def frame_features(self, rgb: torch.Tensor, phase_0: torch.Tensor, phase_1: torch.Tensor) -> torch.Tensor:
        """Per-frame part of the network; frames are independent of each other.

        Args:
            rgb: float32 (F, 2048), ResNet-50 FER+ ``pool5_7x7_s1`` features.
            phase_0: float32 (F, 24, 48, 48), level-1 phase differences in radians.
            phase_1: float32 (F, 24, 24, 24), level-2 phase differences in radians.

        Returns:
            float32 (F, 256), the ``transform`` output that the GRU consumes.
        """
        spatial = self.mlp(rgb)
        temporal = self.phasenet(phase_0, phase_1)
        return self.transform(torch.cat([spatial, temporal], dim=1))

    def sequence_head(self, features: torch.Tensor) -> torch.Tensor:
        """GRU + classifier over a batch of snippets, with the original's axis convention (spec 4.4).

        Args:
            features: float32 (S, L, 256): S consecutive snippets of one track, L frames each. The GRU
                treats axis 0 (snippets) as time and axis 1 (frame positions) as the batch.

        Returns:
            float32 (S, L, 2), columns (valence, arousal).
        """
        num_snippets, length, _ = features.shape
        hidden, _ = self.rnns(features)
        return self.classifier(hidden.reshape(num_snippets * length, -1)).reshape(num_snippets, length, NUM_OUTPUTS)

    def forward(self, phase: Sequence[torch.Tensor], rgb: torch.Tensor) -> torch.Tensor:
        """The original's call signature: ``model([phase_0, phase_1], rgb)``.

        Args:
            phase: (phase_0 float32 (S, L, 24, 48, 48), phase_1 float32 (S, L, 24, 24, 24)), radians.
            rgb: float32 (S, L, 2048).

        Returns:
            float32 (S, L, 2), columns (valence, arousal).
        """
        phase_0, phase_1 = phase
        num_snippets, length = rgb.shape[:2]
        features = self.frame_features(rgb.flatten(0, 1), phase_0.flatten(0, 1), phase_1.flatten(0, 1))
        return self.sequence_head(features.reshape(num_snippets, length, -1))

"""ResNet-50 FER+ backbone: the per-frame 2048-d appearance features of MIMAMO-Net (spec section 3).

The layout is the Caffe/MatConvNet-style ResNet-50 of the pytorch-mcn export ``resnet50_ferplus_dag``: stride 2
sits on the first 1x1 conv ("reduce") and on the projection, not on the 3x3. Module names are flat attributes of
the model so that the 320 state_dict keys match the official ``resnet50_ferplus_dag.pth`` exactly; state_dict
keys are part of the API and must not be renamed.
"""
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

__all__ = [
    "FEATURE_DIM",
    "INPUT_SIZE_PX",
    "MEAN_RGB",
    "NUM_CLASSES",
    "PRECISIONS",
    "RESIZE_PX",
    "ResNet50FerPlus",
    "normalise_faces",
    "preprocess_faces",
    "resize_faces",
]

# Meta of the pytorch-mcn export (spec 3.2): per-channel RGB mean on the 0..255 scale; std is 1.
MEAN_RGB: Tuple[float, float, float] = (131.0912, 103.8827, 91.4953)
INPUT_SIZE_PX = 224
RESIZE_PX = 256  # the API resizes the shorter side to 256 before the 224 centre crop (spec 3.4)
FEATURE_DIM = 2048
NUM_CLASSES = 8  # FER+ emotions; the classifier is kept for weight compatibility, MIMAMO does not use it

# (stage s, number of blocks n_s, bottleneck width mid) from the table in spec 3.3; block outputs are 4 * mid.
_STAGES: Tuple[Tuple[int, int, int], ...] = ((2, 3, 64), (3, 4, 128), (4, 6, 256), (5, 3, 512))
_EXPANSION = 4
_STEM_CHANNELS = 64

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class _BlockSpec:
    """Names of one bottleneck block ``conv{s}_{b}``; the modules themselves live on the model."""

    prefix: str  # e.g. "conv3_1"
    has_projection: bool  # block 1 of every stage
    has_dropout: bool  # only conv5_3 carries the two (eval no-op) Dropout modules


def _conv_bn(model: nn.Module, name: str, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
    """Registers ``name`` (bias-free conv, 'same' padding) and ``name + '_bn'`` on ``model``."""
    model.add_module(name, nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False))
    model.add_module(f"{name}_bn", nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1))


def _add_bottleneck(model: nn.Module, spec: _BlockSpec, c_in: int, mid: int, stride: int) -> None:
    """Registers the convs/BNs (and dropouts) of one bottleneck block, as in spec 3.3."""
    p = spec.prefix
    _conv_bn(model, f"{p}_1x1_reduce", c_in, mid, 1, stride)
    _conv_bn(model, f"{p}_3x3", mid, mid, 3)
    _conv_bn(model, f"{p}_1x1_increase", mid, _EXPANSION * mid, 1)
    if spec.has_projection:
        _conv_bn(model, f"{p}_1x1_proj", c_in, _EXPANSION * mid, 1, stride)
    if spec.has_dropout:
        model.add_module(f"{p}_3x3_drop", nn.Dropout(p=0.5))
        model.add_module(f"{p}_1x1_increase_drop", nn.Dropout(p=0.5))


class ResNet50FerPlus(nn.Module):
    """The ResNet-50 FER+ network with the official state_dict names (spec 3.3).

    ``forward`` returns the ``pool5_7x7_s1`` output, the feature MIMAMO-Net uses; ``forward_head`` maps it to the
    8 FER+ logits through ``classifier``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, _STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(_STEM_CHANNELS, eps=1e-5, momentum=0.1)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        self.blocks: List[_BlockSpec] = []
        c_in = _STEM_CHANNELS
        for stage, n_blocks, mid in _STAGES:
            for b in range(1, n_blocks + 1):
                spec = _BlockSpec(f"conv{stage}_{b}", has_projection=b == 1, has_dropout=(stage, b) == (5, 3))
                stride = 2 if (b == 1 and stage >= 3) else 1
                _add_bottleneck(self, spec, c_in, mid, stride)
                self.blocks.append(spec)
                c_in = _EXPANSION * mid
        self.pool5_7x7_s1 = nn.AvgPool2d(7, stride=1, padding=0)
        self.classifier = nn.Conv2d(c_in, NUM_CLASSES, 1, bias=True)

    def _bottleneck(self, x: torch.Tensor, spec: _BlockSpec) -> torch.Tensor:
        """One bottleneck block (spec 3.3): x float32 (N, C_in, H, W) -> (N, 4 * mid, H / stride, W / stride)."""

        def module(suffix: str) -> nn.Module:
            return getattr(self, f"{spec.prefix}_{suffix}")

        out = F.relu(module("1x1_reduce_bn")(module("1x1_reduce")(x)), inplace=True)
        out = module("3x3")(out)
        if spec.has_dropout:
            out = module("3x3_drop")(out)
        out = F.relu(module("3x3_bn")(out), inplace=True)
        out = module("1x1_increase")(out)
        if spec.has_dropout:
            out = module("1x1_increase_drop")(out)
        out = module("1x1_increase_bn")(out)
        shortcut = module("1x1_proj_bn")(module("1x1_proj")(x)) if spec.has_projection else x
        return F.relu(shortcut + out, inplace=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Runs the network up to ``pool5_7x7_s1``.

        Args:
            x: float32 (N, 3, 224, 224), RGB pixel values on the 0..255 scale minus ``MEAN_RGB``
                (see ``preprocess_faces``).

        Returns:
            float32 (N, 2048, 1, 1), the pool5 output.
        """
        x = F.relu(self.conv1_7x7_s2_bn(self.conv1_7x7_s2(x)), inplace=True)
        x = self.pool1_3x3_s2(x)
        for spec in self.blocks:
            x = self._bottleneck(x, spec)
        return self.pool5_7x7_s1(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes the MIMAMO appearance features.

        The original applies a ReLU to the flattened pool5 output; it is a no-op because pool5 averages
        post-ReLU activations (spec 3.4, step 5), so it is left out.

        Args:
            x: float32 (N, 3, 224, 224), mean-subtracted RGB (see ``preprocess_faces``).

        Returns:
            float32 (N, 2048) features.
        """
        return torch.flatten(self.forward_features(x), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Maps features to the FER+ emotion logits (not used by MIMAMO-Net).

        Args:
            features: float32 (N, 2048) from ``forward``.

        Returns:
            float32 (N, 8) logits.
        """
        return torch.flatten(self.classifier(features[:, :, None, None]), 1)


def _center_crop_box(width: int, height: int, size: int) -> Tuple[int, int, int, int]:
    """PIL crop box (left, upper, right, lower) of the centred ``size`` square, torchvision's rounding."""
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def _resized_size(width: int, height: int, shorter_px: int) -> Tuple[int, int]:
    """(width, height) with the shorter side scaled to ``shorter_px``, as torchvision's ``Resize(int)``."""
    if width <= height:
        return shorter_px, int(shorter_px * height / width)
    return int(shorter_px * width / height), shorter_px


def preprocess_faces(faces: np.ndarray) -> np.ndarray:
    """Turns aligned face crops into network input exactly as the MIMAMO API does (spec 3.4):
    ``normalise_faces(resize_faces(faces))``.

    Each image is resized with Pillow BILINEAR so that its shorter side is 256 px (a square 112x112 crop becomes
    256x256), centre-cropped to 224x224 (box (16, 16, 240, 240) for a square), and ``MEAN_RGB`` is subtracted from
    the 0..255 pixel values in float32. Pillow is required: its 8-bit two-pass resampler is what the original ran.

    Args:
        faces: uint8 (N, H, W, 3) RGB, indexed [n, row y, col x, channel]; H, W >= 1.

    Returns:
        float32 (N, 3, 224, 224), C-contiguous, RGB minus mean (about -132..164).

    Raises:
        TypeError: ``faces`` is not uint8.
        ValueError: ``faces`` is not (N, H, W, 3).
    """
    return normalise_faces(resize_faces(faces))


def resize_faces(faces: np.ndarray) -> np.ndarray:
    """The first step of ``preprocess_faces``: the Pillow resize and the centre crop, still 8-bit.

    Args:
        faces: uint8 (N, H, W, 3) RGB; H, W >= 1.

    Returns:
        uint8 (N, 224, 224, 3) RGB.

    Raises:
        TypeError: ``faces`` is not uint8.
        ValueError: ``faces`` is not (N, H, W, 3).
    """
    faces = np.asarray(faces)
    if faces.dtype != np.uint8:
        raise TypeError(f"faces must be uint8 (N, H, W, 3) RGB; got dtype {faces.dtype}")
    if faces.ndim != 4 or faces.shape[-1] != 3 or 0 in faces.shape[1:3]:
        raise ValueError(f"faces must be uint8 (N, H, W, 3) RGB with H, W > 0; got shape {faces.shape}")
    height, width = faces.shape[1:3]
    size = _resized_size(width, height, RESIZE_PX)
    box = _center_crop_box(size[0], size[1], INPUT_SIZE_PX)
    out = np.empty((faces.shape[0], INPUT_SIZE_PX, INPUT_SIZE_PX, 3), dtype=np.uint8)
    for i, face in enumerate(faces):
        out[i] = np.asarray(Image.fromarray(face).resize(size, Image.BILINEAR).crop(box), dtype=np.uint8)
    return out


def normalise_faces(resized: np.ndarray) -> np.ndarray:
    """The second step of ``preprocess_faces``: uint8 (N, 224, 224, 3) RGB -> float32 (N, 3, 224, 224), C-contiguous,
    minus ``MEAN_RGB`` (each value is ``float32(pixel) - float32(mean)``, so a device that subtracts the same
    float32 mean gets the same bits)."""
    out = np.asarray(resized, dtype=np.float32) - np.asarray(MEAN_RGB, dtype=np.float32)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

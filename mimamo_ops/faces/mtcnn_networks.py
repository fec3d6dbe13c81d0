"""The three MTCNN networks as PyTorch modules, filled from the Keras weight lists (``mtcnn_weights``), and how torch
runs them (``TorchNet``). Imported only where torch runs the networks or converts them to OpenVINO
(``mtcnn_model.MtcnnDetector``): a face stage whose converted networks are cached never imports torch.

* P-Net, fully convolutional over an image pyramid: proposals every 2 px at a 12-px window per scale;
* R-Net on 24x24 crops: rejects and refines proposals;
* O-Net on 48x48 crops: final score, box refinement and five landmarks (eye centres, nose tip, mouth corners).
"""
import ctypes
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.mtcnn_weights import PIXEL_MEAN, PIXEL_SCALE, normalise_pixels

__all__ = ["NETWORKS", "ONet", "PNet", "RNet", "TorchNet", "use_one_thread_here"]


def _conv(weights: List[np.ndarray], out_channels: int) -> nn.Conv2d:
    kernel, bias = weights.pop(0), weights.pop(0)
    layer = nn.Conv2d(kernel.shape[2], out_channels, kernel.shape[:2])
    if kernel.shape[3] != out_channels:
        raise FaceStageError(f"MTCNN weights: conv kernel {kernel.shape}, expected {out_channels} outputs")
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    layer.bias.data = torch.from_numpy(bias)
    return layer


def _prelu(weights: List[np.ndarray]) -> nn.PReLU:
    alpha = weights.pop(0).reshape(-1)
    layer = nn.PReLU(alpha.size)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(alpha))
    return layer


def _dense(weights: List[np.ndarray]) -> nn.Linear:
    kernel, bias = weights.pop(0), weights.pop(0)
    layer = nn.Linear(*kernel.shape)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
    layer.bias.data = torch.from_numpy(bias)
    return layer


class PNet(nn.Module):
    """Proposal network: float32 (B, 3, H, W) -> box offsets (B, 4, h, w), face probability (B, h, w)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 10), _prelu(weights), nn.MaxPool2d(2, 2, ceil_mode=True),
            _conv(weights, 16), _prelu(weights), _conv(weights, 32), _prelu(weights))
        self.box = _conv(weights, 4)
        self.score = _conv(weights, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.body(x)
        return self.box(x), torch.softmax(self.score(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement network: float32 (B, 3, 24, 24) -> box offsets (B, 4), face probability (B,)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 28), _prelu(weights), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(weights, 48), _prelu(weights), nn.MaxPool2d(3, 2),
            _conv(weights, 64), _prelu(weights))
        self.fc = nn.Sequential(_dense(weights), _prelu(weights))
        self.box = _dense(weights)
        self.score = _dense(weights)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # Keras flattens channels-last after swapping its two spatial axes: (B, C, H, W) -> (B, W, H, C).
        x = self.fc(self.body(x).permute(0, 3, 2, 1).flatten(1))
        return self.box(x), torch.softmax(self.score(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output network: float32 (B, 3, 48, 48) -> box offsets (B, 4), landmarks (B, 10), face probability (B,)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 32), _prelu(weights), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(weights, 64), _prelu(weights), nn.MaxPool2d(3, 2),
            _conv(weights, 64), _prelu(weights), nn.MaxPool2d(2, 2, ceil_mode=True),
            _conv(weights, 128), _prelu(weights))
        self.fc = nn.Sequential(_dense(weights), _prelu(weights))
        self.box = _dense(weights)
        self.points = _dense(weights)
        self.score = _dense(weights)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.fc(self.body(x).permute(0, 3, 2, 1).flatten(1))
        return self.box(x), self.points(x), torch.softmax(self.score(x), dim=1)[:, 1]


NETWORKS: Dict[str, type] = {"pnet": PNet, "rnet": RNet, "onet": ONet}


class TorchNet:
    """A network run in eager torch on ``device``: uint8 (B, H, W, 3) RGB images -> its outputs as numpy arrays.

    On the CPU the images are normalised in numpy (the same float32 operations as for OpenVINO; a quarter of the
    time of torch's small-tensor calls for O-Net's per-frame check); on a GPU after the transfer (the uint8 frame
    is what crosses the bus).
    """

    def __init__(self, module: nn.Module, device: str):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> Tuple[np.ndarray, ...]:
        if self.device.type == "cpu":
            batch = torch.from_numpy(normalise_pixels(images))
        else:
            batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            batch = (batch.permute(0, 3, 1, 2).float() - PIXEL_MEAN) * PIXEL_SCALE
        return tuple(output.cpu().numpy() for output in self.module(batch))


def use_one_thread_here() -> None:
    """Limits the calling thread to one OpenMP and one MKL thread, leaving the other threads' settings alone.

    ``torch.set_num_threads`` would also set MKL's process-wide count, which changes the rounding of the
    backbone running in other threads; the thread-local OpenMP and MKL calls that PyTorch's CPU library exports
    are used instead, and ``torch.set_num_threads`` only when a build lacks them. PyTorch sets a thread's
    OpenMP count to the process-wide ``torch.set_num_threads`` value on its first parallel call in that thread,
    so that first call (``torch.get_num_threads``) is made here before the count is set: otherwise the networks
    would run on as many threads as the process was given, and their rounding (so the landmarks, and so the
    predictions) would depend on the worker's thread budget.
    """
    torch.get_num_threads()
    try:
        library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        omp_set_num_threads = library.omp_set_num_threads
        mkl_set_num_threads_local = library.MKL_Set_Num_Threads_Local
    except (OSError, AttributeError):
        torch.set_num_threads(1)
        return
    omp_set_num_threads(1)
    mkl_set_num_threads_local(1)

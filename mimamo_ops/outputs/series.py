"""The per-frame predictions of one face of one video, as the outputs (CSV, plots, annotated video) read them."""
import dataclasses
from typing import Optional

import numpy as np

__all__ = ["FaceSeries"]


@dataclasses.dataclass(frozen=True)
class FaceSeries:
    """The per-frame predictions of one face track of one video (rows sorted by frame).

    Attributes:
        face_id: the track's face id.
        frame_indices: int64 (N,) 0-based video frame index of each row, strictly increasing; a jump of more
            than 1 is a stretch of frames where this face was not found.
        timestamps_s: float64 (N,) presentation time of each frame, in seconds from the stream start.
        valence_arousal: float32 (N, 2), columns (valence, arousal), raw network output, about [-1, 1].
        smoothed_valence_arousal: float32 (N, 2), the same after the moving average (equal to the raw values
            when smoothing is off).
        boxes_px: float32 (N, 4) face boxes (x0, y0, x1, y1) in pixels of the upright decoded frame, origin
            top-left; None when unknown (only the annotated video needs them).
    """

    face_id: int
    frame_indices: np.ndarray
    timestamps_s: np.ndarray
    valence_arousal: np.ndarray
    smoothed_valence_arousal: np.ndarray
    boxes_px: Optional[np.ndarray] = None

    def __post_init__(self):
        count = len(self.frame_indices)
        shapes = {
            "timestamps_s": (np.shape(self.timestamps_s), (count,)),
            "valence_arousal": (np.shape(self.valence_arousal), (count, 2)),
            "smoothed_valence_arousal": (np.shape(self.smoothed_valence_arousal), (count, 2)),
        }
        if self.boxes_px is not None:
            shapes["boxes_px"] = (np.shape(self.boxes_px), (count, 4))
        for name, (got, expected) in shapes.items():
            if tuple(got) != expected:
                raise ValueError(f"face {self.face_id}: {name} must have shape {expected} for {count} frames, "
                                 f"got {tuple(got)}")
        if count > 1 and np.any(np.diff(self.frame_indices) <= 0):
            raise ValueError(f"face {self.face_id}: frame_indices must be strictly increasing")

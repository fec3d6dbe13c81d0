"""Writes face-stage output to disk in OpenFace's layout, so a user can see what the model will see.

* ``<out_dir>/<stem>_aligned/frame_det_<face_id:02d>_<frame:06d>.bmp``: the aligned crops, lossless BMP,
  ``frame`` 1-based as OpenFace numbers frames (spec 2.3).
* ``<out_dir>/<stem>.csv``: one row per face per frame, and one row with ``success`` 0 and empty face
  columns for a frame without a face. Columns: ``frame`` (1-based), ``face_id`` (the person), ``track_id`` (the
  continuous segment of that person, ended by a shot cut or a lost face), ``timestamp`` (s),
  ``confidence``, ``success``, ``box_x0, box_y0, box_x1, box_y1`` (px), ``id_source`` (how ``face_id`` was
  decided: ``new``, ``reid`` or ``track``, ``records.ID_SOURCES``), ``x_0..x_67``, ``y_0..y_67`` (px).
"""
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Set

import cv2

from mimamo_ops.faces.records import FrameFaces

__all__ = ["FaceWriteSummary", "write_faces", "aligned_image_name"]

_HEADER = (["frame", "face_id", "track_id", "timestamp", "confidence", "success", "box_x0", "box_y0", "box_x1",
            "box_y1", "id_source"]
           + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)])


@dataclass
class FaceWriteSummary:
    """What ``write_faces`` wrote: frame and crop counts, the face ids seen and the paths."""

    frames: int = 0
    crops: int = 0
    frames_with_face: int = 0
    face_ids: Set[int] = field(default_factory=set)
    csv_path: Path = Path()
    aligned_dir: Path = Path()


def aligned_image_name(face_id: int, frame_index: int) -> str:
    """OpenFace's crop file name for a 0-based frame index: ``frame_det_<id:02d>_<index + 1:06d>.bmp``."""
    return f"frame_det_{face_id:02d}_{frame_index + 1:06d}.bmp"


def write_faces(frames: Iterable[FrameFaces], out_dir: Path, stem: str) -> FaceWriteSummary:
    """Streams face records to crops and a CSV (layout in the module docstring).

    Args:
        frames: the face stage's output for one video.
        out_dir: output directory (created if missing).
        stem: the video's file name without its last extension, as OpenFace names its outputs.

    Returns:
        The counts and paths written.

    Raises:
        OSError: a file cannot be written.
    """
    out_dir = Path(out_dir)
    aligned_dir = out_dir / f"{stem}_aligned"
    aligned_dir.mkdir(parents=True, exist_ok=True)
    summary = FaceWriteSummary(csv_path=out_dir / f"{stem}.csv", aligned_dir=aligned_dir)
    with open(summary.csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_HEADER)
        for frame in frames:
            summary.frames += 1
            if not frame.faces:
                writer.writerow([frame.index + 1, "", "", f"{frame.timestamp_s:.6f}", 0, 0] + [""] * (len(_HEADER) - 6))
                continue
            summary.frames_with_face += 1
            for face in frame.faces:
                path = aligned_dir / aligned_image_name(face.face_id, frame.index)
                if not cv2.imwrite(str(path), cv2.cvtColor(face.aligned, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"{path}: cannot write the aligned image")
                summary.crops += 1
                summary.face_ids.add(face.face_id)
                writer.writerow(
                    [frame.index + 1, face.face_id, face.track_id, f"{frame.timestamp_s:.6f}", f"{face.confidence:.4f}", 1]
                    + [f"{v:.2f}" for v in face.box] + [face.id_source]
                    + [f"{v:.2f}" for v in face.landmarks[:, 0]] + [f"{v:.2f}" for v in face.landmarks[:, 1]])
    return summary

"""The OpenFace face stage: runs an installed OpenFace 2.x binary and reads its outputs (spec 2.1-2.4, 2.7).

``FeatureExtraction`` (single face) or ``FaceLandmarkVidMulti`` (multi-face) runs once per video into a
temporary directory, with the command line of spec 2.1 passed as an argument list (never through a shell,
spec 10.2.1) and its exit status checked. Its CSV (``<stem>.csv``) and aligned images
(``<stem>_aligned/frame_det_<face:02d>_<frame:06d>.bmp``, 1-based frames) are then streamed back as the same
``FrameFaces`` records as the built-in stage. OpenFace's multi-face slots are not identity-stable (spec 2.7),
so they are re-labelled by box overlap (``tracking.BoxIdTracker``).
"""
import csv
import logging
import os
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from mimamo_ops.decoding.video import DecodeReport, probe_video
from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FaceRecord, FrameFaces
from mimamo_ops.faces.tracking import BoxIdTracker, landmark_box

__all__ = ["OpenFaceExtractor", "build_openface_command", "SINGLE_FACE_BINARY", "MULTI_FACE_BINARY"]

logger = logging.getLogger(__name__)

SINGLE_FACE_BINARY = "FeatureExtraction"
MULTI_FACE_BINARY = "FaceLandmarkVidMulti"
# Output groups requested by the original API (spec 2.1 item 4); -2Dfp gives the landmarks read here.
_OUTPUT_FLAGS = ("-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze", "-simalign")
_STDERR_TAIL_CHARS = 500


def build_openface_command(binary: Path, video_path: Path, out_dir: Path, config: FaceConfig) -> List[str]:
    """Returns OpenFace's argument list for one video (spec 2.1; ``-nobadaligned``, ``-q`` always).

    Args:
        binary: the OpenFace executable.
        video_path: the input video.
        out_dir: OpenFace's output directory.
        config: ``face_size`` gives ``-simsize``; ``mask`` False adds ``-nomask``.

    Returns:
        The argv list, executable first.
    """
    command = [str(binary), "-f", str(Path(video_path).absolute()), "-out_dir", str(out_dir),
               "-simsize", str(config.face_size), *_OUTPUT_FLAGS, "-nobadaligned"]
    if not config.mask:
        command.append("-nomask")
    command.append("-q")
    return command


def _locate_binary(openface_path: str, multi_face: bool) -> Path:
    path = Path(openface_path)
    if path.is_dir():
        path = path / (MULTI_FACE_BINARY if multi_face else SINGLE_FACE_BINARY)
    if not path.is_file():
        raise FaceStageError(f"{path}: OpenFace executable not found")
    if not os.access(path, os.X_OK):
        raise FaceStageError(f"{path}: OpenFace executable is not executable")
    return path


def _read_csv_rows(csv_path: Path) -> Dict[int, List[Tuple[int, float, float, np.ndarray]]]:
    """Reads OpenFace's CSV: 1-based frame -> [(face_id, timestamp_s, confidence, landmarks float32 (68, 2))]
    for rows whose ``success`` is 1."""
    rows: Dict[int, List[Tuple[int, float, float, np.ndarray]]] = defaultdict(list)
    try:
        with open(csv_path, newline="") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = [name.strip() for name in next(reader, [])]
            try:
                columns = [header.index(name) for name in ("frame", "face_id", "timestamp", "confidence", "success")]
                x_columns = [header.index(f"x_{i}") for i in range(68)]
                y_columns = [header.index(f"y_{i}") for i in range(68)]
            except ValueError as error:
                raise FaceStageError(f"{csv_path}: OpenFace CSV lacks a column ({error})") from error
            for line_number, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    frame, face_id, timestamp_s, confidence, success = (float(row[c]) for c in columns)
                    if success < 0.5:
                        continue
                    landmarks = np.array([[float(row[x]), float(row[y])] for x, y in zip(x_columns, y_columns)],
                                         dtype=np.float32)
                except (ValueError, IndexError) as error:
                    raise FaceStageError(f"{csv_path}: bad row at line {line_number} ({error})") from error
                rows[int(frame)].append((int(face_id), timestamp_s, confidence, landmarks))
    except OSError as error:
        raise FaceStageError(f"{csv_path}: cannot read OpenFace's CSV ({error.strerror})") from error
    return rows


def _read_aligned(path: Path, face_size: int) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FaceStageError(f"{path}: cannot read OpenFace's aligned image")
    if bgr.shape[:2] != (face_size, face_size):
        raise FaceStageError(f"{path}: aligned image is {bgr.shape[1]}x{bgr.shape[0]}, expected "
                             f"{face_size}x{face_size}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class OpenFaceExtractor(FaceExtractor):
    """Face stage backed by an installed OpenFace 2.x binary.

    Args:
        config: ``openface_path`` (OpenFace's binary directory, or the executable itself), ``multi_face``,
            ``face_size``, ``mask``; ``min_track_iou`` and ``max_missing_frames`` re-label multi-face slots.

    Raises:
        FaceStageError: the executable is missing or not executable.
    """

    def __init__(self, config: FaceConfig):
        if config.openface_path is None:
            raise ValueError("OpenFaceExtractor needs FaceConfig.openface_path")
        self.config = config
        self.binary = _locate_binary(config.openface_path, config.multi_face)

    def extract(self, video_path: str, report: Optional[DecodeReport] = None) -> Iterator[FrameFaces]:
        """Runs OpenFace on ``video_path`` and streams one ``FrameFaces`` per video frame.

        OpenFace decodes the video itself, so ``report`` is left as it is.

        Raises:
            VideoError: the file is not a readable video (checked before OpenFace runs).
            FaceStageError: OpenFace failed (exit status and the tail of its stderr in the message) or its
                outputs are unreadable.
        """
        if not isinstance(video_path, (str, os.PathLike)):
            raise FaceStageError(f"{video_path}: OpenFace reads local files only, and this video was not copied to "
                                 f"the local disk")
        info = probe_video(video_path)
        with tempfile.TemporaryDirectory(prefix="mimamo_openface_") as out_dir:
            out_dir = Path(out_dir)
            self._run(Path(video_path), out_dir)
            stem = Path(video_path).stem  # OpenFace strips the last extension (spec 2.3)
            rows = _read_csv_rows(out_dir / f"{stem}.csv")
            n_frames = max([info.frame_count or 0, *rows.keys()])
            ids = BoxIdTracker(self.config.min_track_iou, self.config.max_missing_frames)
            total = 0
            for index in range(n_frames):
                frame_faces = self._frame_faces(index, rows.get(index + 1, []), out_dir / f"{stem}_aligned",
                                                info.fps, ids)
                total += len(frame_faces.faces)
                yield frame_faces
        if total == 0:
            logger.warning("%s: OpenFace found no face in any frame", video_path)

    def _run(self, video_path: Path, out_dir: Path) -> None:
        command = build_openface_command(self.binary, video_path, out_dir, self.config)
        logger.debug("running %s", command)
        try:
            result = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
        except OSError as error:
            raise FaceStageError(f"{video_path}: cannot run {self.binary} ({error})") from error
        if result.returncode != 0:
            lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
            tail = " | ".join(lines)[-_STDERR_TAIL_CHARS:] or "(no stderr)"
            raise FaceStageError(f"{video_path}: {self.binary.name} exited with code {result.returncode}: {tail}")

    def _frame_faces(self, index: int, rows: List[Tuple[int, float, float, np.ndarray]], aligned_dir: Path,
                     fps: float, ids: BoxIdTracker) -> FrameFaces:
        present = []
        for slot, timestamp_s, confidence, landmarks in rows:
            path = aligned_dir / f"frame_det_{slot:02d}_{index + 1:06d}.bmp"
            if path.is_file():
                present.append((slot, timestamp_s, confidence, landmarks, path))
        timestamp_s = rows[0][1] if rows else index / fps
        boxes = np.array([landmark_box(landmarks) for _, _, _, landmarks, _ in present]).reshape(-1, 4)
        face_ids = ids.assign(boxes) if self.config.multi_face else [0] * len(present)
        faces = [
            FaceRecord(frame_index=index, timestamp_s=row_time, face_id=face_id, track_id=face_id,
                       confidence=float(confidence),
                       box=tuple(float(v) for v in box), landmarks=landmarks,
                       aligned=_read_aligned(path, self.config.face_size))
            for (_, row_time, confidence, landmarks, path), face_id, box in zip(present, face_ids, boxes)
        ]
        faces.sort(key=lambda face: face.face_id)
        return FrameFaces(index=index, timestamp_s=float(timestamp_s), faces=tuple(faces))

"""The annotated video: the input video re-encoded with each face's box and live valence/arousal gauges.

The seed could ask OpenFace for a tracked video (``-tracked``, hard-coded off, spec 11.1); it showed landmarks,
not emotions. Here each decoded frame (:func:`mimamo_ops.decoding.video.iter_frames`, upright RGB) gets, for every face
found in it:

* the face box, in the face's colour (:func:`mimamo_ops.outputs.plots.face_color_rgb`, the same colour as in the plot);
* a label ``face K`` in white on a tab of the face's colour above the box's top-left corner;
* two horizontal gauges below the box (above it when there is no room), ``V`` for valence and ``A`` for arousal:
  on a dark panel, a grey track for [-1, 1] with a tick at 0, a bar from 0 to the smoothed value (green when positive, red when
  negative), and the value as text.

Frames are decoded, drawn and encoded one at a time, so memory does not grow with the video's length. Each frame
keeps its presentation time (variable frame rates survive). The source's first audio stream is copied as it is
(packets remuxed, not re-encoded) when the source is a path; a codec the output container cannot hold is left
out with a warning.
"""
import contextlib
import dataclasses
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import av
import cv2
import numpy as np

from mimamo_ops.decoding.video import VideoSource, iter_frames, probe_video
from mimamo_ops.errors import VideoError
from mimamo_ops.outputs.plots import face_color_rgb
from mimamo_ops.outputs.series import FaceSeries

__all__ = ["AnnotatedVideo", "FaceOverlay", "draw_face_overlay", "annotate_video"]

LOGGER = logging.getLogger(__name__)

GAUGE_WIDTH_PX = 120  # at 360 px frame height; gauges and text scale with the frame height
GAUGE_HEIGHT_PX = 10
POSITIVE_RGB = (40, 200, 70)
NEGATIVE_RGB = (230, 50, 40)
PANEL_RGB = (20, 20, 20)
TRACK_RGB = (90, 90, 90)
TEXT_RGB = (255, 255, 255)
LABEL_WIDTH_PX = 14
VALUE_WIDTH_PX = 46
_TIME_BASE = Fraction(1, 90000)  # output timestamps, seconds * 90000
_CODEC_BY_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4"}

PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True)
class FaceOverlay:
    """What is drawn for one face in one frame.

    Attributes:
        face_id: the track's face id (picks the colour).
        box_px: (x0, y0, x1, y1) face box in pixels of the upright frame, origin top-left.
        valence: smoothed valence, about [-1, 1].
        arousal: smoothed arousal, about [-1, 1].
    """

    face_id: int
    box_px: Tuple[float, float, float, float]
    valence: float
    arousal: float


@dataclasses.dataclass(frozen=True)
class AnnotatedVideo:
    """What :func:`annotate_video` wrote.

    Attributes:
        path: the output video.
        frames_written: number of frames encoded (every decoded frame of the input).
        frames_annotated: number of frames with at least one face drawn.
        width: frame width in pixels.
        height: frame height in pixels.
    """

    path: Path
    frames_written: int
    frames_annotated: int
    width: int
    height: int


def _scale_of(frame_height_px: int) -> float:
    return max(0.6, frame_height_px / 360.0)


def _draw_gauge(rgb: np.ndarray, origin_xy: Tuple[int, int], label: str, value: float, scale: float) -> None:
    """Draws one labelled gauge with its top-left corner at ``origin_xy`` (in place)."""
    x, y = origin_xy
    width = int(round(GAUGE_WIDTH_PX * scale))
    height = max(4, int(round(GAUGE_HEIGHT_PX * scale)))
    font_scale = 0.4 * scale
    thickness = max(1, int(round(scale)))
    label_width = int(round(LABEL_WIDTH_PX * scale))
    cv2.putText(rgb, label, (x, y + height), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_RGB, thickness,
                cv2.LINE_AA)
    x0 = x + label_width
    cv2.rectangle(rgb, (x0, y), (x0 + width, y + height), TRACK_RGB, cv2.FILLED)
    centre = x0 + width // 2
    clipped = float(np.clip(value, -1.0, 1.0)) if np.isfinite(value) else 0.0
    end = int(round(centre + clipped * (width // 2)))
    cv2.rectangle(rgb, (min(centre, end), y + 1), (max(centre, end), y + height - 1),
                  POSITIVE_RGB if clipped >= 0 else NEGATIVE_RGB, cv2.FILLED)
    cv2.line(rgb, (centre, y - 2), (centre, y + height + 2), TEXT_RGB, 1)
    cv2.putText(rgb, f"{value:+.2f}", (x0 + width + int(4 * scale), y + height), cv2.FONT_HERSHEY_SIMPLEX,
                font_scale, TEXT_RGB, thickness, cv2.LINE_AA)


def draw_face_overlay(rgb: np.ndarray, overlay: FaceOverlay) -> None:
    """Draws one face's box, label and valence/arousal gauges onto a frame, in place (module docstring).

    Args:
        rgb: uint8 (H, W, 3) RGB frame, indexed ``[row y, col x]``, origin top-left; modified in place.
        overlay: what to draw.
    """
    height_px, width_px = rgb.shape[:2]
    scale = _scale_of(height_px)
    color = face_color_rgb(overlay.face_id)
    box_thickness = max(2, int(round(3 * scale)))
    x0, y0, x1, y1 = (int(round(v)) for v in overlay.box_px)
    cv2.rectangle(rgb, (x0, y0), (x1, y1), color, box_thickness)
    # The label: white text on a tab of the face's colour sitting on the box's top-left corner.
    text_thickness = max(1, int(round(scale)))
    label = f"face {overlay.face_id}"
    (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale,
                                                          text_thickness)
    tab_bottom = max(text_height + baseline + 4, y0 - box_thickness // 2)
    tab_left = x0 - box_thickness // 2
    cv2.rectangle(rgb, (tab_left, tab_bottom - text_height - baseline - 4), (tab_left + text_width + 6, tab_bottom),
                  color, cv2.FILLED)
    cv2.putText(rgb, label, (tab_left + 3, tab_bottom - baseline - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale,
                TEXT_RGB, text_thickness, cv2.LINE_AA)
    gauge_step = int(round((GAUGE_HEIGHT_PX + 6) * scale))
    block_height = 2 * gauge_step
    top = y1 + box_thickness + 4
    if top + block_height > height_px:
        top = max(0, y0 - box_thickness - int(24 * scale) - block_height)
    block_width = int(round((LABEL_WIDTH_PX + GAUGE_WIDTH_PX + VALUE_WIDTH_PX) * scale))
    left = int(np.clip(x0, 0, max(0, width_px - block_width)))
    top = int(top)
    # A dark panel behind the gauges keeps their text readable on any background.
    cv2.rectangle(rgb, (left - 2, top - 4), (left + block_width, top + block_height - 2), PANEL_RGB, cv2.FILLED)
    _draw_gauge(rgb, (left, top), "V", overlay.valence, scale)
    _draw_gauge(rgb, (left, top + gauge_step), "A", overlay.arousal, scale)


class _OverlayLookup:
    """Yields the overlays of each frame index in increasing order, walking every track once (no per-frame dict)."""

    def __init__(self, series: Sequence[FaceSeries]):
        for track in series:
            if track.boxes_px is None:
                raise ValueError(f"face {track.face_id}: boxes_px is needed to draw the annotated video")
        self._series = list(series)
        self._cursor = [0] * len(self._series)

    def overlays_at(self, frame_index: int) -> List[FaceOverlay]:
        overlays = []
        for number, track in enumerate(self._series):
            row = self._cursor[number]
            while row < len(track.frame_indices) and track.frame_indices[row] < frame_index:
                row += 1
            self._cursor[number] = row
            if row < len(track.frame_indices) and track.frame_indices[row] == frame_index:
                valence, arousal = (float(v) for v in track.smoothed_valence_arousal[row])
                overlays.append(FaceOverlay(track.face_id, tuple(float(v) for v in track.boxes_px[row]),
                                            valence, arousal))
        return overlays


@contextlib.contextmanager
def _open_audio_source(source: VideoSource) -> Iterator[Optional[av.container.InputContainer]]:
    """A second demuxer on ``source`` for its first audio stream, or None (no audio, or a file-like source)."""
    if not isinstance(source, (str, os.PathLike)):
        yield None  # one reader only on a file-like object: the frames
        return
    container = av.open(os.fspath(source))
    try:
        yield container if container.streams.audio else None
    finally:
        container.close()


def _add_audio_stream(container: av.container.OutputContainer, audio_source: Optional[av.container.InputContainer],
                      output_path: Path) -> Optional[av.stream.Stream]:
    """Adds an output stream copying the source's first audio stream, or None when there is none or it cannot be."""
    if audio_source is None:
        return None
    audio_in = audio_source.streams.audio[0]
    try:
        return container.add_stream_from_template(audio_in)
    except (av.FFmpegError, ValueError) as exc:
        LOGGER.warning("%s: the audio (%s) is left out: %s", output_path, audio_in.codec_context.name, exc)
        return None


def _copy_audio_packets(audio_source: av.container.InputContainer, audio_out: av.stream.Stream,
                        container: av.container.OutputContainer) -> None:
    """Remuxes every audio packet of the source into ``audio_out`` (timestamps rescaled by PyAV)."""
    for packet in audio_source.demux(audio_source.streams.audio[0]):
        if packet.dts is None:  # the demuxer's empty end-of-stream packet
            continue
        packet.stream = audio_out
        container.mux(packet)


def annotate_video(source: VideoSource, output_path: PathLike, series: Sequence[FaceSeries], *,
                   codec: Optional[str] = None, crf: int = 20) -> AnnotatedVideo:
    """Re-encodes a video with each face's box and valence/arousal gauges drawn on it (module docstring).

    Args:
        source: the input video (path or binary file-like object), the one the predictions were made on.
        output_path: the video to write; its suffix picks the container (``.mp4`` recommended).
        series: the video's face tracks, with ``boxes_px``; frame indices are those of ``iter_frames``.
        codec: encoder name; default libx264 for .mp4/.mkv/.mov, mpeg4 for .avi.
        crf: libx264 constant rate factor (lower is better quality; 18 is visually lossless).

    Returns:
        An :class:`AnnotatedVideo`.

    Raises:
        ValueError: a track has no boxes, or the output suffix is unknown and no codec is given.
        VideoError: the input cannot be decoded, or the output cannot be written.
    """
    output_path = Path(output_path)
    if codec is None:
        if output_path.suffix.lower() not in _CODEC_BY_SUFFIX:
            raise ValueError(f"{output_path}: unknown video suffix; expected one of {sorted(_CODEC_BY_SUFFIX)}")
        codec = _CODEC_BY_SUFFIX[output_path.suffix.lower()]
    lookup = _OverlayLookup(series)
    info = probe_video(source)
    if hasattr(source, "seek"):
        source.seek(0)
    # yuv420p needs even sizes; an odd last row/column is padded by repeating the edge.
    width, height = info.width + info.width % 2, info.height + info.height % 2
    output_path.parent.mkdir(parents=True, exist_ok=True)
    written = annotated = 0
    try:
        with av.open(str(output_path), "w") as container, _open_audio_source(source) as audio_source:
            audio_out = _add_audio_stream(container, audio_source, output_path)
            stream = container.add_stream(codec, rate=Fraction(info.fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.time_base = _TIME_BASE
            stream.time_base = _TIME_BASE
            if codec == "libx264":
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            last_pts = -1
            for frame in iter_frames(source):
                rgb = frame.rgb
                if rgb.shape[:2] != (height, width):
                    rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
                else:
                    rgb = rgb.copy()
                overlays = lookup.overlays_at(frame.index)
                for overlay in overlays:
                    draw_face_overlay(rgb, overlay)
                annotated += bool(overlays)
                out_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                last_pts = max(last_pts + 1, int(round(frame.timestamp_s / _TIME_BASE)))
                out_frame.pts, out_frame.time_base = last_pts, _TIME_BASE
                container.mux(stream.encode(out_frame))
                written += 1
            container.mux(stream.encode(None))
            if audio_out is not None:
                _copy_audio_packets(audio_source, audio_out, container)
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"{output_path}: cannot write the annotated video: {exc}") from exc
    LOGGER.info("%s: wrote %d frames (%d with a face) to %s", info.path, written, annotated, output_path)
    return AnnotatedVideo(path=output_path, frames_written=written, frames_annotated=annotated, width=width,
                          height=height)

"""Streaming video decoding with PyAV: upright RGB frames with their index and presentation time.

The seed read videos with OpenCV only to print the frame count, fps and resolution (spec 11.2, step 1) and
left decoding to OpenFace, whose frame numbers are 1-based and whose timestamps are ``(frame - 1) / fps``
(spec 2.3, 2.4). Here decoding is ours: indices are **0-based** and timestamps are the real presentation
times, so variable-frame-rate videos get correct times (spec 10.3.5 lists the seed's drift).

Frame numbering (the same whether decoding starts at 0 or after a seek):
    Frame ``i`` is the frame with the ``i``-th smallest presentation timestamp (pts) of the video stream,
    counting from 0, which is the order a decoder outputs frames. A full decode counts frames as they come.
    A seek first demuxes packets from the start of the file (reading packet headers, no decoding) to find the
    pts of the target frame by that rank, then seeks to the keyframe at or before it and decodes forward,
    dropping earlier frames. This is exact for constant and variable frame rate alike; it assumes, as every
    intact stream satisfies, one decoded frame per packet. Its cost is one read of the file up to the target;
    memory stays bounded by the codec's reorder depth, not the video length.

Timestamps: ``timestamp_s = (pts - stream start_time) * time_base``, in seconds.

Rotation: the display matrix (phone videos) is read from each decoded frame (``VideoFrame.rotation``, degrees
counter-clockwise) and applied with ``np.rot90``, so frames come out upright; flips in the matrix are ignored.

Errors: every failure raises :class:`mimamo_ops.errors.VideoError` naming the file and the cause. A damaged or
truncated file first yields every frame that decoded, then raises once: ``"<file>: decoding failed at frame N:
<cause>"`` when FFmpeg reports an error, or ``"<file>: truncated or damaged: decoding ended after N frames ..."``
when the stream just ends well before both the frame count and the duration its container declares (a cut mp4;
with frame threading FFmpeg often reports no error). Where the container cannot vouch for both (a cut AVI or
Matroska file), an early end only logs a warning (``_check_complete``).
"""
import dataclasses
import heapq
import io
import logging
import os
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Optional, Tuple, Union

import av
import av.container
import av.video.reformatter
import av.video.stream
import numpy as np

from mimamo_ops.errors import VideoError
from mimamo_ops.threads import decoder_threads

__all__ = ["VideoFrame", "VideoInfo", "VideoSource", "iter_frames", "probe_video"]

logger = logging.getLogger(__name__)

VideoSource = Union[str, os.PathLike, BinaryIO]
_FALLBACK_FPS = 30.0
# Errors PyAV and the file system raise while opening, demuxing or decoding. (av.FFmpegError is a ValueError;
# ValueError also covers bad metadata encodings.)
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream.

    Attributes:
        path: the file name (for file-like sources, their ``name`` attribute or ``"<stream>"``).
        width: frame width in pixels, after rotation.
        height: frame height in pixels, after rotation.
        fps: average frame rate in frames/s (the seed smooths over ``round(fps)`` frames, spec 11.2 step 5).
        frame_count: number of frames declared by the container, or estimated from duration and fps; None
            when neither is known.
        duration_s: stream (or container) duration in seconds, or None when unknown.
        rotation_deg: counter-clockwise rotation applied to decoded frames to make them upright; one of
            0, 90, 180, 270.
        codec: FFmpeg decoder name (e.g. ``"h264"``, ``"mpeg4"``).
    """

    path: str
    width: int
    height: int
    fps: float
    frame_count: Optional[int]
    duration_s: Optional[float]
    rotation_deg: int
    codec: str


@dataclasses.dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: 0-based frame number in presentation order (see the module docstring).
        timestamp_s: presentation time in seconds, relative to the stream start.
        rgb: uint8 (H, W, 3) RGB, upright (display rotation applied), indexed ``[row y, col x]``, origin at the
            top-left.
    """

    index: int
    timestamp_s: float
    rgb: np.ndarray


def probe_video(source: VideoSource) -> VideoInfo:
    """Reads a video's metadata and decodes its first frame (to check it decodes and to read the rotation).

    Args:
        source: a path, or a readable binary file-like object (seekable for containers that need it).

    Returns:
        The :class:`VideoInfo` of the first video stream.

    Raises:
        VideoError: the file is missing, empty, not a video, or its first frame cannot be decoded.
    """
    name = _name_of(source)
    with _open_container(source, name) as container:
        stream = _video_stream(container, name)
        first = None
        try:
            first = next(container.decode(stream), None)
        except _DECODE_ERRORS as exc:
            raise VideoError(f"{name}: decoding failed at frame 0: {_cause(exc)}") from exc
        if first is None:
            raise VideoError(f"{name}: no decodable frames")
        rotation_deg = _rotation_of(first, name)
        width, height = first.width, first.height
        if rotation_deg in (90, 270):
            width, height = height, width
        fps = _average_fps(stream)
        duration_s = _duration_s(container, stream)
        return VideoInfo(
            path=name,
            width=width,
            height=height,
            fps=fps,
            frame_count=_declared_frame_count(stream, fps, duration_s),
            duration_s=duration_s,
            rotation_deg=rotation_deg,
            codec=stream.codec_context.name,
        )


def iter_frames(source: VideoSource, start_frame: int = 0, end_frame: Optional[int] = None,
                start_time_s: Optional[float] = None, thread_count: int = 0) -> Iterator[VideoFrame]:
    """Decodes frames one at a time (memory does not grow with the video length).

    Args:
        source: a path, or a readable binary file-like object (seekable when seeking).
        start_frame: first frame index to yield (0-based); above 0 the decoder seeks (module docstring).
        end_frame: stop before this frame index (exclusive), or None for the end of the video.
        start_time_s: instead of ``start_frame``, start at the first frame whose timestamp is at or after
            this time in seconds.
        thread_count: decoder threads; 0: the process's thread budget (``mimamo_ops.threads``), or FFmpeg's
            choice without one. Frame and slice threading are both allowed.

    Yields:
        :class:`VideoFrame` in presentation order, with consecutive indices from the start frame.

    Raises:
        ValueError: bad arguments (negative start, ``end_frame < start_frame``, both starts given).
        VideoError: the file is missing, empty, not a video, cannot be seeked, fails to decode, or ends well
            before the frame count its container declares; frames that decoded before a failure are yielded
            first.
    """
    if start_frame < 0 or (start_time_s is not None and start_time_s < 0):
        raise ValueError(f"start must be >= 0, got start_frame={start_frame}, start_time_s={start_time_s}")
    if start_time_s is not None and start_frame:
        raise ValueError("give start_frame or start_time_s, not both")
    if end_frame is not None and end_frame < start_frame:
        raise ValueError(f"end_frame ({end_frame}) must be >= start_frame ({start_frame})")
    name = _name_of(source)
    with _open_container(source, name) as container:
        stream = _video_stream(container, name)
        origin_pts = stream.start_time or 0
        index, target_pts = 0, None
        if start_frame > 0 or start_time_s is not None:
            try:
                index, target_pts = _locate_start(container, stream, origin_pts, start_frame, start_time_s)
            except _DECODE_ERRORS as exc:
                raise VideoError(f"{name}: cannot seek to the start frame: {_cause(exc)}") from exc
            if target_pts is None:
                return  # the start lies past the last frame
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = thread_count or decoder_threads()
        fps = _average_fps(stream)
        # One reformatter for the whole stream: it keeps its scaler context, which is ~10x faster per frame than
        # frame.to_ndarray(format="rgb24") building a new one each call (bench/bench_decode.py).
        reformatter = av.video.reformatter.VideoReformatter()
        last_timestamp_s = None
        try:
            frames = _decode_from(container, stream, target_pts, origin_pts, fps)
            for frame in frames:
                if end_frame is not None and index >= end_frame:
                    return
                video_frame = _to_video_frame(frame, index, origin_pts, fps, reformatter, name)
                last_timestamp_s = video_frame.timestamp_s
                yield video_frame
                index += 1
        except _DECODE_ERRORS as exc:
            raise VideoError(f"{name}: decoding failed at frame {index}: {_cause(exc)}") from exc
        if end_frame is None or index < end_frame:
            _check_complete(container, stream, index, last_timestamp_s, fps, name)


def _check_complete(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    n_decoded: int, last_timestamp_s: Optional[float], fps: float, name: str) -> None:
    """Raises (or warns) when decoding ended well before the end the container declares: a truncated file.

    Two signs are weighed. Count: more than ``max(2, declared // 100)`` frames fewer than the container's
    frame count (the slack absorbs edit lists that hide a frame or two). Time: the last frame more than
    ``max(0.5 s, 2 frames)`` before the stream's duration. Both together raise. The count alone only warns:
    AVI counts dropped-frame placeholders that decode to nothing, and a cut AVI loses the index its duration
    comes from. Without a frame count (Matroska, WebM) the duration, possibly the container's and so
    including a longer audio track, only warns.
    """
    declared = int(stream.frames or 0)
    stream_duration_s = float(stream.duration * stream.time_base) if stream.duration else None
    duration_s = stream_duration_s if stream_duration_s is not None else _duration_s(container, stream)
    slack_s = max(0.5, 2.0 / fps)
    short_time = duration_s is not None and (last_timestamp_s is None or last_timestamp_s + slack_s < duration_s)
    if declared:
        if declared - n_decoded <= max(2, declared // 100):
            return
        if stream_duration_s is None or short_time:
            raise VideoError(f"{name}: truncated or damaged: decoding ended after {n_decoded} frames "
                             f"({_format_s(last_timestamp_s)}), the container declares {declared} frames "
                             f"({_format_s(duration_s)})")
        logger.warning("%s: decoded %d frames, the container declares %d (truncated file, or dropped-frame "
                       "placeholders)", name, n_decoded, declared)
    elif short_time:
        logger.warning("%s: the video ended at %s, the container says it lasts %s (truncated file?)",
                       name, _format_s(last_timestamp_s), _format_s(duration_s))


def _format_s(seconds: Optional[float]) -> str:
    return "an unknown time" if seconds is None else f"{seconds:.3f} s"


def _decode_from(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 target_pts: Optional[int], origin_pts: int, fps: float) -> Iterator[av.VideoFrame]:
    """Yields decoded frames from ``target_pts`` on (from the start when it is None).

    The demuxer seeks by decode timestamps, so with B-frames the keyframe it lands on can be displayed after
    the target; then the seek point moves back (doubling the step) until the first decoded frame is at or
    before the target, or the stream start is reached.
    """
    if target_pts is None:
        yield from container.decode(stream)
        return
    step = max(1, round(1.0 / (fps * stream.time_base)))  # one frame, in time_base units
    seek_pts = target_pts
    while True:
        container.seek(seek_pts, backward=True, any_frame=False, stream=stream)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            return
        if first.pts is None or first.pts <= target_pts or seek_pts <= origin_pts:
            break
        seek_pts = max(origin_pts, seek_pts - step)
        step *= 2
    for frame in _chain_one(first, frames):
        if frame.pts is None or frame.pts >= target_pts:
            yield frame


def _chain_one(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest


def _locate_start(container: av.container.InputContainer, stream: av.video.stream.VideoStream, origin_pts: int,
                  start_frame: int, start_time_s: Optional[float]) -> Tuple[int, Optional[int]]:
    """Finds the index and pts of the first frame to yield by ranking packet pts (module docstring).

    Returns:
        (index, pts in ``stream.time_base`` units), or (count, None) when the start lies past the last frame.
    """
    count = 0
    for pts in _iter_presentation_pts(container, stream):
        if start_time_s is None:
            if count == start_frame:
                return count, pts
        elif float((pts - origin_pts) * stream.time_base) >= start_time_s - 1e-9:
            return count, pts
        count += 1
    return count, None


def _iter_presentation_pts(container: av.container.InputContainer, stream: av.video.stream.VideoStream
                           ) -> Iterator[int]:
    """Yields the video packets' pts in increasing order, demuxing a freshly opened container without decoding.

    Packets come in decode order (dts increasing) and each has pts >= dts, so a pending pts below the current
    dts can no longer be undercut by a later packet: it is released. The heap holds at most the reorder depth.
    """
    pending = []
    for packet in container.demux(stream):
        if packet.pts is None:
            continue  # the demuxer's final empty packet, or a packet with no timestamp
        heapq.heappush(pending, packet.pts)
        if packet.dts is not None:
            while pending and pending[0] < packet.dts:
                yield heapq.heappop(pending)
    while pending:
        yield heapq.heappop(pending)


def _to_video_frame(frame: av.VideoFrame, index: int, origin_pts: int, fps: float,
                    reformatter: av.video.reformatter.VideoReformatter, name: str) -> VideoFrame:
    """Converts a decoded frame to upright RGB with its timestamp (``index / fps`` when it has no pts).

    The colour conversion is FFmpeg's (swscale, the frame's own colorspace tag), single-threaded.
    """
    if frame.pts is None:
        timestamp_s = index / fps
    else:
        timestamp_s = float((frame.pts - origin_pts) * frame.time_base)
    rgb = reformatter.reformat(frame, format="rgb24", threads=1).to_ndarray()
    quarter_turns = _rotation_of(frame, name) // 90
    if quarter_turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=quarter_turns))
    return VideoFrame(index=index, timestamp_s=timestamp_s, rgb=rgb)


def _rotation_of(frame: av.VideoFrame, name: str) -> int:
    """Returns the frame's display rotation, counter-clockwise degrees in {0, 90, 180, 270}."""
    degrees = frame.rotation
    if degrees % 90:
        logger.warning("%s: display rotation %s degrees rounded to the nearest quarter turn", name, degrees)
    return (round(degrees / 90) * 90) % 360


def _average_fps(stream: av.video.stream.VideoStream) -> float:
    """Average frame rate in frames/s (average, then guessed, then base rate; 30 if none is known)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    return _FALLBACK_FPS


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream
                ) -> Optional[float]:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _declared_frame_count(stream: av.video.stream.VideoStream, fps: float, duration_s: Optional[float]
                          ) -> Optional[int]:
    if stream.frames:
        return int(stream.frames)
    if duration_s:
        return int(round(duration_s * fps))
    return None


def _video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    if not container.streams.video:
        kinds = ", ".join(s.type for s in container.streams) or "none"
        raise VideoError(f"{name}: not a video (no video stream; streams: {kinds})")
    return container.streams.video[0]


@contextmanager
def _open_container(source: VideoSource, name: str) -> Iterator[av.container.InputContainer]:
    """Opens ``source`` for reading; turns every opening failure into a VideoError naming the file."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise VideoError(f"{name}: no such file")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise VideoError(f"{name}: empty file (0 bytes)")
        target = path
    else:
        if _is_empty_stream(source):
            raise VideoError(f"{name}: empty file (0 bytes)")
        target = source
    try:
        container = av.open(target, mode="r")
    except _DECODE_ERRORS as exc:
        raise VideoError(f"{name}: cannot open: {_cause(exc)}") from exc
    try:
        yield container
    finally:
        container.close()


def _is_empty_stream(fileobj: BinaryIO) -> bool:
    """True when a seekable file-like object has no bytes left; False when unknown (not seekable)."""
    try:
        if not fileobj.seekable():
            return False
        here = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(here)
    except (AttributeError, OSError, ValueError):
        return False
    return end - here <= 0


def _name_of(source: VideoSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _cause(exc: BaseException) -> str:
    """The FFmpeg/OS message without errno and call-site noise (``"Invalid data found when processing input"``)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


"""Streaming video decoding with PyAV: upright RGB frames with their index and presentation time.

The seed read videos with OpenCV only to print the frame count, fps and resolution (spec 11.2, step 1) and
left decoding to OpenFace, whose frame numbers are 1-based and whose timestamps are ``(frame - 1) / fps``
(spec 2.3, 2.4). Here decoding is ours: indices are **0-based** and timestamps are the real presentation
times, so variable-frame-rate videos get correct times (spec 10.3.5 lists the seed's drift).

Frame numbering (the same whether decoding starts at 0 or after a seek):
    Frame ``i`` is the frame with the ``i``-th smallest presentation timestamp (pts) among the video stream's
    packets (packets without a pts and empty packets are not frames), counting from 0. This is the order a
    decoder outputs frames, and it is exact for constant and variable frame rate alike. A full decode ranks
    each packet's pts as it is demuxed (a heap the size of the codec's reorder depth) and gives a decoded
    frame the rank of its pts, so a frame keeps its true number when packets before it do not decode: in a
    damaged clip the indices have gaps, never shifts. A seek first demuxes packets from the start of the file
    (reading packet headers, no decoding) to find the pts of the target frame by that rank, then seeks to the
    keyframe at or before it and decodes forward, dropping earlier frames (it counts frames as they come and
    assumes an intact stream: one decoded frame per packet). Its cost is one read of the file up to the
    target; memory stays bounded by the codec's reorder depth, not the video length.

Damaged video (a full decode): a packet that fails to decode is skipped and decoding goes on with the next
one, so every frame that decodes is kept, with its true index and time. A frame the decoder hands out after a
later frame was already yielded (it happens right after a damaged stretch) is dropped, so that frames stay in
order. Frame *slots* are the packets demuxed plus, for a truncated file (``_check_complete``), the frames the
container declares beyond them; the slots without a yielded frame are ``DecodeReport.frames_undecodable``.
The video fails (``VideoError``, after its frames were yielded) when no frame decodes, or when more than
``MAX_UNDECODABLE_SHARE`` (50 %) of its slots do not decode; below that it only carries a warning.

Timestamps: ``timestamp_s = (pts - stream start_time) * time_base``, in seconds.

Rotation: the display matrix (phone videos) is read from each decoded frame (``VideoFrame.rotation``, degrees
counter-clockwise) and applied with ``np.rot90``, so frames come out upright; flips in the matrix are ignored.

Errors: every failure raises :class:`mimamo_ops.errors.VideoError` naming the file and the cause. A file
damaged or truncated past the share above first yields every frame that decoded, then raises once:
``"<file>: damaged: N of M frames do not decode (more than 50 %) ..."``. A stream that ends well before both
the frame count and the duration its container declares (a cut mp4) counts the missing frames as
undecodable; where the container cannot vouch for both (a cut AVI or Matroska file), an early end only logs
a warning (``_check_complete``). A demuxing error (unreadable container data) ends the stream there, like a
cut. A seek that fails to decode raises ``"<file>: decoding failed at frame N: <cause>"``.
"""
import collections
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

from mimamo_ops.decoding.sources import StreamSource
from mimamo_ops.errors import VideoError
from mimamo_ops.runtime.threads import decoder_threads

__all__ = ["MAX_UNDECODABLE_SHARE", "DecodeReport", "VideoFrame", "VideoInfo", "VideoSource", "iter_frames",
           "iter_frames_in_span", "probe_video"]

logger = logging.getLogger(__name__)

# A local path, an open file-like object (read once), or a ``StreamSource`` (opened afresh by each pass)
VideoSource = Union[str, os.PathLike, BinaryIO, StreamSource]
_FALLBACK_FPS = 30.0
MAX_UNDECODABLE_SHARE = 0.5  # a video with more than this share of undecodable frame slots fails
_MAX_REORDER_PACKETS = 32  # without decode timestamps, a pts is ranked once this many later packets are pending
# Errors PyAV and the file system raise while opening, demuxing or decoding. (av.FFmpegError is a ValueError;
# ValueError also covers bad metadata encodings.)
_DECODE_ERRORS = (av.FFmpegError, OSError, ValueError, EOFError)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream.

    Attributes:
        path: the file name (for a ``StreamSource`` its name; for file-like sources, their ``name`` attribute or
            ``"<stream>"``).
        width: frame width in pixels, after rotation.
        height: frame height in pixels, after rotation.
        fps: average frame rate in frames/s (the seed smooths over ``round(fps)`` frames, spec 11.2 step 5).
        frame_count: number of frames declared by the container, or estimated from duration and fps; None
            when neither is known.
        duration_s: stream (or container) duration in seconds, or None when unknown.
        rotation_deg: counter-clockwise rotation applied to decoded frames to make them upright; one of
            0, 90, 180, 270.
        codec: FFmpeg's name of the stream's codec (e.g. ``"h264"``, ``"hevc"``, ``"av1"``), not of the decoder
            that reads it (``"libdav1d"`` for AV1).
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
        index: 0-based frame number in presentation order (see the module docstring); -1 from
            ``iter_frames_in_span``, which cannot count frames.
        timestamp_s: presentation time in seconds, relative to the stream start.
        rgb: uint8 (H, W, 3) RGB, upright (display rotation applied), indexed ``[row y, col x]``, origin at the
            top-left.
    """

    index: int
    timestamp_s: float
    rgb: np.ndarray


@dataclasses.dataclass
class DecodeReport:
    """What a full decode found, filled in by :func:`iter_frames` when it ends (module docstring).

    Attributes:
        frames_decoded: frames yielded.
        frames_undecodable: frame slots without a yielded frame (damaged packets, frames dropped out of order,
            frames missing from a truncated file); 0 for an intact video, None until a decode reaches the end.
        warning: one line describing the damage, or None for an intact video.
    """

    frames_decoded: int = 0
    frames_undecodable: Optional[int] = None
    warning: Optional[str] = None


def probe_video(source: VideoSource, max_frame_pixels: Optional[int] = None) -> VideoInfo:
    """Reads a video's metadata and decodes its first frame (to check it decodes and to read the rotation).

    Args:
        source: a path, or a readable binary file-like object (seekable for containers that need it).
        max_frame_pixels: the largest frame (width x height, in pixels) accepted, or None for no limit. The
            size the stream declares is checked before any frame is decoded, then that of the first frame.

    Returns:
        The :class:`VideoInfo` of the first video stream.

    Raises:
        VideoError: the file is missing, empty, not a video, its frames are larger than ``max_frame_pixels``,
            or its first frame cannot be decoded.
    """
    name = _name_of(source)
    with _open_container(source, name) as container:
        stream = _video_stream(container, name)
        _check_frame_size(stream.codec_context.width, stream.codec_context.height, max_frame_pixels, name)
        decoded = _RankedDecode(container, stream)
        ranked_first = next(iter(decoded), None)
        if ranked_first is None:
            detail = f" (first error: {_cause(decoded.first_error)})" if decoded.first_error is not None else ""
            raise VideoError(f"{name}: no decodable frames{detail}")
        first = ranked_first[1]
        _check_frame_size(first.width, first.height, max_frame_pixels, name)
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
            codec=stream.codec.canonical_name,
        )


def iter_frames(source: VideoSource, start_frame: int = 0, end_frame: Optional[int] = None,
                start_time_s: Optional[float] = None, thread_count: int = 0,
                report: Optional[DecodeReport] = None) -> Iterator[VideoFrame]:
    """Decodes frames one at a time (memory does not grow with the video length).

    Args:
        source: a path, or a readable binary file-like object (seekable when seeking).
        start_frame: first frame index to yield (0-based); above 0 the decoder seeks (module docstring).
        end_frame: stop before this frame index (exclusive), or None for the end of the video.
        start_time_s: instead of ``start_frame``, start at the first frame whose timestamp is at or after
            this time in seconds.
        thread_count: decoder threads; 0: the process's thread budget (``mimamo_ops.runtime.threads``), or FFmpeg's
            choice without one. Frame and slice threading are both allowed.
        report: filled in when a decode from the start reaches the end of the video (damage counts).

    Yields:
        :class:`VideoFrame` in presentation order. Indices are consecutive from the start frame for an intact
        video; a damaged one skips the numbers of the frames that do not decode.

    Raises:
        ValueError: bad arguments (negative start, ``end_frame < start_frame``, both starts given).
        VideoError: the file is missing, empty, not a video, or cannot be seeked; no frame decodes; more than
            ``MAX_UNDECODABLE_SHARE`` of the frames do not decode or are missing (module docstring); a seek
            fails to decode. Frames that decoded before a failure are yielded first.
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
        if target_pts is not None:
            yield from _iter_sought(container, stream, target_pts, index, end_frame, origin_pts, fps, reformatter,
                                    name)
            return
        decoded = _RankedDecode(container, stream)
        last_timestamp_s = None
        for rank, frame in decoded:
            if end_frame is not None and rank >= end_frame:
                return
            video_frame = _to_video_frame(frame, rank, origin_pts, fps, reformatter, name)
            last_timestamp_s = video_frame.timestamp_s
            yield video_frame
        _finish_report(container, stream, decoded, last_timestamp_s, fps, name, report)


def iter_frames_in_span(source: VideoSource, start_time_s: float, end_time_s: float, thread_count: int = 0
                        ) -> Iterator[VideoFrame]:
    """Decodes the frames shown from ``start_time_s`` to ``end_time_s`` (both included) after one seek, for a caller
    that already knows the timestamps it wants (``beam_pipeline.units``, from an earlier full decode).

    Unlike ``iter_frames(start_frame=...)``, nothing is read before the keyframe at or before the start: the cost
    is that of the span, not of its position in the file (for a remote video, only those bytes are fetched). The
    price is that frame numbers cannot be counted: every frame's ``index`` is -1, and a caller tells frames apart
    by ``timestamp_s``, which is the same as a full decode gives (``(pts - start) * time_base``).

    Args:
        source: a path or a seekable file-like object / ``StreamSource``.
        start_time_s: the first timestamp wanted, seconds.
        end_time_s: the last timestamp wanted, seconds (>= ``start_time_s``).
        thread_count: decoder threads, as ``iter_frames``.

    Yields:
        ``VideoFrame``s in presentation order with ``index`` -1.

    Raises:
        ValueError: ``end_time_s < start_time_s`` or a negative start.
        VideoError: the file cannot be opened or seeked, or decoding fails.
    """
    if start_time_s < 0 or end_time_s < start_time_s:
        raise ValueError(f"need 0 <= start_time_s <= end_time_s, got {start_time_s} and {end_time_s}")
    name = _name_of(source)
    with _open_container(source, name) as container:
        stream = _video_stream(container, name)
        origin_pts = stream.start_time or 0
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = thread_count or decoder_threads()
        fps = _average_fps(stream)
        reformatter = av.video.reformatter.VideoReformatter()
        target_pts = origin_pts + int(np.floor(start_time_s / stream.time_base))
        try:
            for frame in _decode_from(container, stream, target_pts, origin_pts, fps):
                video_frame = _to_video_frame(frame, -1, origin_pts, fps, reformatter, name)
                if video_frame.timestamp_s > end_time_s + 1e-9:
                    return
                if video_frame.timestamp_s >= start_time_s - 1e-9:
                    yield video_frame
        except _DECODE_ERRORS as exc:
            raise VideoError(f"{name}: decoding failed after a seek to {_format_s(start_time_s)}: {_cause(exc)}"
                             ) from exc


def _iter_sought(container: av.container.InputContainer, stream: av.video.stream.VideoStream, target_pts: int,
                 index: int, end_frame: Optional[int], origin_pts: int, fps: float,
                 reformatter: av.video.reformatter.VideoReformatter, name: str) -> Iterator[VideoFrame]:
    """Decodes from a located start frame, counting frames as they come (an intact stream is assumed)."""
    try:
        for frame in _decode_from(container, stream, target_pts, origin_pts, fps):
            if end_frame is not None and index >= end_frame:
                return
            yield _to_video_frame(frame, index, origin_pts, fps, reformatter, name)
            index += 1
    except _DECODE_ERRORS as exc:
        raise VideoError(f"{name}: decoding failed at frame {index}: {_cause(exc)}") from exc


def _finish_report(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   decoded: "_RankedDecode", last_timestamp_s: Optional[float], fps: float, name: str,
                   report: Optional[DecodeReport]) -> None:
    """Counts the undecodable slots of a finished full decode; raises past the allowed share."""
    missing = _check_complete(container, stream, decoded.slots, decoded.last_slot_timestamp_s(), fps, name)
    slots = decoded.slots + missing
    undecodable = max(0, slots - decoded.yielded)
    warning = None
    if undecodable:
        causes = [f"{decoded.damaged_packets} packet(s) failed to decode"] if decoded.damaged_packets else []
        if decoded.dropped_late:
            causes.append(f"{decoded.dropped_late} frame(s) came out of order")
        if missing:
            causes.append(f"{missing} frame(s) missing at the end (truncated)")
        if decoded.demux_error is not None:
            causes.append(f"demuxing stopped: {_cause(decoded.demux_error)}")
        if not causes:
            causes.append("packets decoded to no frame")
        warning = (f"{undecodable} of {slots} frames do not decode and were skipped ({'; '.join(causes)}); "
                   f"last decoded frame at {_format_s(last_timestamp_s)}")
    if report is not None:
        report.frames_decoded, report.frames_undecodable, report.warning = decoded.yielded, undecodable, warning
    if decoded.yielded == 0:
        detail = f" (first error: {_cause(decoded.first_error)})" if decoded.first_error is not None else ""
        raise VideoError(f"{name}: no decodable frames{detail}")
    if undecodable > MAX_UNDECODABLE_SHARE * slots:
        raise VideoError(f"{name}: damaged: {warning}; more than {MAX_UNDECODABLE_SHARE:.0%} is too much")
    if warning:
        logger.warning("%s: %s", name, warning)


class _RankedDecode:
    """Iterates ``(rank, frame)`` over a full decode that skips damaged packets (module docstring).

    Each packet's pts is pushed on a heap as it is demuxed; once the demuxer's decode timestamp has passed a
    pts, no later packet can undercut it and it gets the next rank (packets without a decode timestamp: once
    ``_MAX_REORDER_PACKETS`` later ones are pending). Decoded frames wait (at most the reorder
    depth) until their pts has a rank, then come out in pts order; a frame below the last one yielded is
    dropped. Counters (``slots``, ``yielded``, ``damaged_packets``, ``dropped_late``) are final once the
    iteration ends.
    """

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream):
        self._container = container
        self._stream = stream
        self._pending_pts: list = []  # heap of packet pts without a rank yet
        self._ranked = collections.deque()  # (pts, rank) ranked but not yet matched to a frame, increasing
        self._waiting: list = []  # heap of (pts, serial, frame) decoded, waiting for their rank
        self._serial = 0
        self._last_pts: Optional[int] = None
        self._last_rank = -1  # the last rank given to a packet pts
        self._yielded_rank = -1  # the rank of the last frame yielded
        self._max_slot_pts: Optional[int] = None
        self.slots = 0
        self.yielded = 0
        self.damaged_packets = 0
        self.dropped_late = 0
        self.first_error: Optional[BaseException] = None
        self.demux_error: Optional[BaseException] = None

    def last_slot_timestamp_s(self) -> Optional[float]:
        """Presentation time of the latest packet demuxed, in seconds from the stream start."""
        if self._max_slot_pts is None:
            return None
        return float((self._max_slot_pts - (self._stream.start_time or 0)) * self._stream.time_base)

    def __iter__(self) -> Iterator[Tuple[int, av.VideoFrame]]:
        for packet in self._demux():
            if packet is not None and packet.pts is not None and packet.size:
                heapq.heappush(self._pending_pts, packet.pts)
                self.slots += 1
                self._max_slot_pts = packet.pts if self._max_slot_pts is None else max(self._max_slot_pts,
                                                                                       packet.pts)
            self._decode(packet)
            if packet is None:
                self._rank_below(None)
            elif packet.dts is not None:
                self._rank_below(packet.dts)
            while len(self._pending_pts) > _MAX_REORDER_PACKETS:  # packets without a dts: rank by a window
                self._rank_next()
            yield from self._release(final=packet is None)

    def _demux(self) -> Iterator[Optional[av.Packet]]:
        """The stream's packets, then None (the flush); a demuxing error ends the packets early."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets, None)
            except _DECODE_ERRORS as exc:
                self.demux_error = exc
                self.first_error = self.first_error or exc
                packet = None
            if packet is None:
                yield None
                return
            if packet.size:  # the demuxer's own final empty packet would flush too early
                yield packet

    def _decode(self, packet: Optional[av.Packet]) -> None:
        try:
            frames = self._stream.decode(packet)
        except _DECODE_ERRORS as exc:
            self.damaged_packets += 1
            self.first_error = self.first_error or exc
            logger.debug("skipping a packet that does not decode (pts %s): %s",
                         getattr(packet, "pts", None), _cause(exc))
            return
        for frame in frames:
            if frame.time_base is None:  # codec-level decoding leaves it unset
                frame.time_base = self._stream.time_base
            heapq.heappush(self._waiting, (frame.pts if frame.pts is not None else -1, self._serial, frame))
            self._serial += 1

    def _rank_below(self, dts: Optional[int]) -> None:
        while self._pending_pts and (dts is None or self._pending_pts[0] < dts):
            self._rank_next()

    def _rank_next(self) -> None:
        self._last_rank += 1
        self._ranked.append((heapq.heappop(self._pending_pts), self._last_rank))

    def _release(self, final: bool) -> Iterator[Tuple[int, av.VideoFrame]]:
        ranked_up_to = self._ranked[-1][0] if self._ranked else None
        while self._waiting:
            pts, _, frame = self._waiting[0]
            if frame.pts is None:  # no timestamp: it follows the last frame
                heapq.heappop(self._waiting)
                yield self._emit(self._yielded_rank + 1, None, frame)
                continue
            if not final and (ranked_up_to is None or pts > ranked_up_to):
                return  # its rank is not known yet
            heapq.heappop(self._waiting)
            if self._last_pts is not None and pts <= self._last_pts:
                self.dropped_late += 1
                continue
            while self._ranked and self._ranked[0][0] < pts:
                self._ranked.popleft()
            if self._ranked and self._ranked[0][0] == pts:
                rank = self._ranked.popleft()[1]
            else:  # a pts no packet carried: the next number
                rank = self._yielded_rank + 1
            yield self._emit(rank, pts, frame)

    def _emit(self, rank: int, pts: Optional[int], frame: av.VideoFrame) -> Tuple[int, av.VideoFrame]:
        if pts is not None:
            self._last_pts = pts
        self._yielded_rank = rank
        self.yielded += 1
        return rank, frame


def _check_complete(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    n_slots: int, last_timestamp_s: Optional[float], fps: float, name: str) -> int:
    """Returns how many frames a truncated file lost at its end (0 when it looks complete), or warns.

    Two signs are weighed. Count: more than ``max(2, declared // 100)`` frame slots fewer than the container's
    frame count (the slack absorbs edit lists that hide a frame or two). Time: the last packet more than
    ``max(0.5 s, 2 frames)`` before the stream's duration. Both together mean a truncated file: the declared
    frames beyond the slots are lost. The count alone only warns: AVI counts dropped-frame placeholders that
    decode to nothing, and a cut AVI loses the index its duration comes from. Without a frame count (Matroska,
    WebM) the duration, possibly the container's and so including a longer audio track, only warns.
    """
    declared = int(stream.frames or 0)
    stream_duration_s = float(stream.duration * stream.time_base) if stream.duration else None
    duration_s = stream_duration_s if stream_duration_s is not None else _duration_s(container, stream)
    slack_s = max(0.5, 2.0 / fps)
    short_time = duration_s is not None and (last_timestamp_s is None or last_timestamp_s + slack_s < duration_s)
    if declared:
        if declared - n_slots <= max(2, declared // 100):
            return 0
        if stream_duration_s is None or short_time:
            logger.warning("%s: truncated: the stream ends after %d frames (%s), the container declares %d (%s)",
                           name, n_slots, _format_s(last_timestamp_s), declared, _format_s(duration_s))
            return declared - n_slots
        logger.warning("%s: %d frames in the stream, the container declares %d (truncated file, or dropped-frame "
                       "placeholders)", name, n_slots, declared)
    elif short_time:
        logger.warning("%s: the video ended at %s, the container says it lasts %s (truncated file?)",
                       name, _format_s(last_timestamp_s), _format_s(duration_s))
    return 0


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
        if packet.pts is None or not packet.size:
            continue  # not a frame: the demuxer's final empty packet, or a packet with no timestamp or no data
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


def _check_frame_size(width: int, height: int, max_frame_pixels: Optional[int], name: str) -> None:
    """Raises when a ``width`` x ``height`` frame (pixels; 0 when unknown) is over ``max_frame_pixels``."""
    if max_frame_pixels is not None and width * height > max_frame_pixels:
        raise VideoError(f"{name}: frame {width}x{height} over the limit of {max_frame_pixels} pixels "
                         f"({width * height} pixels)")


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
    """Opens ``source`` for reading; turns every failure to open a container into a VideoError naming the file
    (the ``OSError`` of a ``StreamSource`` that cannot be read at all is raised as it is)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise VideoError(f"{name}: no such file")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise VideoError(f"{name}: empty file (0 bytes)")
        with _opened_container(path, name) as container:
            yield container
    elif isinstance(source, StreamSource):
        stream = source.open()  # a storage error stays itself (OSError), so that callers can retry what may pass
        try:
            if _is_empty_stream(stream):
                raise VideoError(f"{name}: empty file (0 bytes)")
            with _opened_container(stream, name) as container:
                yield container
        finally:
            stream.close()
    else:
        if _is_empty_stream(source):
            raise VideoError(f"{name}: empty file (0 bytes)")
        with _opened_container(source, name) as container:
            yield container


@contextmanager
def _opened_container(target: Union[str, BinaryIO], name: str) -> Iterator[av.container.InputContainer]:
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
    if isinstance(source, StreamSource):
        return source.name
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _cause(exc: BaseException) -> str:
    """The FFmpeg/OS message without errno and call-site noise (``"Invalid data found when processing input"``)."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


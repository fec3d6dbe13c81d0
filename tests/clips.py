"""Deterministic test clips built from a real face photo and encoded with PyAV.

The face is the astronaut portrait shipped with scikit-image (``skimage.data.astronaut()``, a frontal face,
512x512 RGB). Every generator is seeded, writes one file and returns its path; every frame size is even and
the default frame rate is 30 fps. Generation takes well under a second per clip.

Geometry conventions: sizes are ``(width, height)`` in pixels, arrays are indexed ``[row y, col x]`` with the
origin at the top-left corner, in-plane angles are degrees counter-clockwise (``cv2.getRotationMatrix2D``).
"""
from fractions import Fraction
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import av
import cv2
import numpy as np
import skimage.data

PathLike = Union[str, Path]

DEFAULT_FPS = 30
# Head and shoulders of the astronaut: rows 0..255, cols 104..359 of the 512x512 photo (head ~175 px tall).
_FACE_ROWS = slice(0, 256)
_FACE_COLS = slice(104, 360)
# Fine time base used when per-frame timestamps are given (90 kHz, as MPEG uses).
_VFR_TIME_BASE = Fraction(1, 90000)
_CODEC_BY_SUFFIX = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4",
                    ".webm": "libvpx"}


def face_photo(variant: int = 0) -> np.ndarray:
    """Returns a real face photo.

    Args:
        variant: 0 = the astronaut's head and shoulders; 1 = a visibly different second face (the same crop
            mirrored left-right, hue rotated by 60 degrees and brightened), for two-face clips.

    Returns:
        uint8 (256, 256, 3) RGB.

    Raises:
        ValueError: ``variant`` is not 0 or 1.
    """
    photo = np.ascontiguousarray(skimage.data.astronaut()[_FACE_ROWS, _FACE_COLS])
    if variant == 0:
        return photo
    if variant != 1:
        raise ValueError(f"face_photo variant must be 0 or 1, got {variant}")
    mirrored = np.ascontiguousarray(photo[:, ::-1])
    hsv = cv2.cvtColor(mirrored, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + 30) % 180  # OpenCV hue unit is 2 degrees.
    hsv[..., 2] = np.clip(hsv[..., 2].astype(np.int32) + 25, 0, 255)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def write_clip(path: PathLike, frames: Iterable[np.ndarray], fps: int = DEFAULT_FPS, codec: Optional[str] = None,
               pts_s: Optional[Sequence[float]] = None, rotation_deg: Optional[int] = None,
               gop: int = 30, faststart: bool = False, pix_fmt: str = "yuv420p") -> Path:
    """Encodes RGB frames to a video file.

    Args:
        path: output file; its suffix picks the container.
        frames: uint8 (H, W, 3) RGB arrays, all the same even size.
        fps: nominal frame rate in frames/s (constant-rate timestamps are ``i / fps``).
        codec: encoder name; None picks libx264 (crf 18) for .mp4/.mkv/.mov, mpeg4 for .avi, libvpx for .webm.
        pts_s: per-frame presentation timestamps in seconds (strictly increasing) for a variable-rate clip,
            or None for constant rate. Stored on a 1/90000 s time base (1/1000 s in Matroska).
        rotation_deg: display rotation written as the stream's display matrix: the angle in degrees,
            counter-clockwise, by which a player rotates the decoded frames (PyAV's ``VideoFrame.rotation``
            convention), or None for no display matrix.
        gop: maximum keyframe interval in frames.
        faststart: put the mp4 index (moov atom) before the media data.
        pix_fmt: the encoded pixel format ("yuv420p10le": 10-bit, as phones record HDR HEVC).

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    codec = codec or _CODEC_BY_SUFFIX[path.suffix.lower()]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = pix_fmt
        stream.codec_context.gop_size = gop
        stream.codec_context.thread_count = 1  # threaded encoders make other bytes on other core counts
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        elif codec == "mpeg4":
            stream.codec_context.qscale = 3
            stream.codec_context.flags |= av.codec.context.Flags.qscale
        if pts_s is not None:
            stream.codec_context.time_base = _VFR_TIME_BASE
            stream.time_base = _VFR_TIME_BASE
        if rotation_deg is not None:
            stream.set_display_rotation(rotation_deg)
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts_s is None:
                frame.pts = i
                frame.time_base = Fraction(1, fps)
            else:
                frame.pts = round(pts_s[i] / _VFR_TIME_BASE)
                frame.time_base = _VFR_TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def textured_background(size: Tuple[int, int], seed: int = 0, shift_px: Tuple[float, float] = (0.0, 0.0)
                        ) -> np.ndarray:
    """Returns a smooth random gray-ish texture, optionally translated.

    Args:
        size: (width, height) in pixels.
        seed: random seed.
        shift_px: (dx, dy) translation of the texture in pixels.

    Returns:
        uint8 (height, width, 3) RGB, values about 60..200.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    cell = 16  # texture grain in pixels
    noise = rng.uniform(0.0, 1.0, size=(height // cell + 2, width // cell + 2, 3)).astype(np.float32)
    big = cv2.resize(noise, (cell * noise.shape[1], cell * noise.shape[0]), interpolation=cv2.INTER_CUBIC)
    shift = np.float32([[1, 0, shift_px[0]], [0, 1, shift_px[1]]])
    moved = cv2.warpAffine(big, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
    gray = moved.mean(axis=2, keepdims=True)
    tex = 0.7 * gray + 0.3 * moved  # mostly gray, a little colour
    return np.clip(60.0 + 140.0 * tex, 0, 255).astype(np.uint8)


def composite_face(background: np.ndarray, photo: np.ndarray, center_xy: Tuple[float, float],
                   height_px: float, angle_deg: float) -> np.ndarray:
    """Pastes ``photo`` onto a copy of ``background``, scaled, rotated in-plane and centred.

    Args:
        background: uint8 (H, W, 3) RGB.
        photo: uint8 (h, w, 3) RGB.
        center_xy: where the photo centre lands, (x, y) in pixels.
        height_px: pasted height of the photo in pixels.
        angle_deg: in-plane rotation, degrees counter-clockwise.

    Returns:
        uint8 (H, W, 3) RGB.
    """
    h, w = photo.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle_deg, height_px / h)
    matrix[:, 2] += np.array(center_xy) - np.array([w / 2.0, h / 2.0])
    out_size = (background.shape[1], background.shape[0])
    warped = cv2.warpAffine(photo, matrix, out_size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((h, w), np.float32), matrix, out_size, flags=cv2.INTER_LINEAR)[..., None]
    blended = mask * warped.astype(np.float32) + (1.0 - mask) * background.astype(np.float32)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def moving_face_frames(n_frames: int = 60, size: Tuple[int, int] = (640, 360), variant: int = 0
                       ) -> List[np.ndarray]:
    """Frames of one face that moves, scales (164..180 px tall) and rotates (+-12 degrees) smoothly.

    Returns:
        ``n_frames`` uint8 (height, width, 3) RGB arrays.
    """
    width, height = size
    photo = face_photo(variant)
    background = textured_background(size, seed=1)
    frames = []
    for i in range(n_frames):
        phase = 2 * np.pi * i / max(n_frames, 1)
        center = (width / 2 + 0.25 * width * np.sin(phase), height / 2 + 0.08 * height * np.sin(2 * phase))
        face_h = min(172 + 8 * np.cos(phase), 0.9 * height)
        frames.append(composite_face(background, photo, center, face_h, 12.0 * np.sin(phase)))
    return frames


def moving_face_clip(path: PathLike, n_frames: int = 60, size: Tuple[int, int] = (640, 360)) -> Path:
    """Writes a clip of one face moving, scaling and rotating in-plane smoothly (H.264 for .mp4)."""
    return write_clip(path, moving_face_frames(n_frames, size))


def static_face_clip(path: PathLike, n_frames: int = 30, size: Tuple[int, int] = (640, 360)) -> Path:
    """Writes a clip of one still face (170 px tall, centred, upright) on a still background."""
    frame = composite_face(textured_background(size, seed=2), face_photo(0), (size[0] / 2, size[1] / 2), 170, 0.0)
    return write_clip(path, [frame] * n_frames)


def two_faces_clip(path: PathLike, n_frames: int = 60, size: Tuple[int, int] = (640, 360)) -> Path:
    """Writes a clip of two different faces crossing horizontally, one in the upper and one in the lower half.

    Face 0 (``face_photo(0)``) moves left to right in the upper half, face 1 (``face_photo(1)``) right to left
    in the lower half; each is 170 px tall and their vertical overlap (chest only) is small, so both stay visible.
    """
    width, height = size
    background = textured_background(size, seed=3)
    photos = (face_photo(0), face_photo(1))
    face_h = min(170.0, 0.48 * height)
    frames = []
    for i in range(n_frames):
        s = i / max(n_frames - 1, 1)
        x0 = 0.15 * width + 0.7 * width * s
        x1 = 0.85 * width - 0.7 * width * s
        frame = composite_face(background, photos[0], (x0, 0.27 * height), face_h, 0.0)
        frame = composite_face(frame, photos[1], (x1, 0.73 * height), face_h, 0.0)
        frames.append(frame)
    return write_clip(path, frames)


def no_face_clip(path: PathLike, n_frames: int = 30, size: Tuple[int, int] = (320, 240)) -> Path:
    """Writes a clip of a drifting texture with no face."""
    frames = [textured_background(size, seed=4, shift_px=(1.5 * i, 0.7 * i)) for i in range(n_frames)]
    return write_clip(path, frames)


def rotated_clip(path: PathLike, n_frames: int = 20, rotation_deg: int = 90) -> Path:
    """Writes the moving face stored sideways, with a display matrix that turns it upright.

    The upright frames are ``moving_face_frames(n_frames, (640, 360))``. Each is stored as
    ``np.rot90(upright, k=-rotation_deg // 90)`` and the stream's display matrix says "rotate by
    ``rotation_deg`` counter-clockwise", so a decoder that applies the display matrix recovers the upright
    frames (written with PyAV's ``VideoStream.set_display_rotation``; no remux needed).

    Args:
        rotation_deg: a multiple of 90.
    """
    if rotation_deg % 90:
        raise ValueError(f"rotation_deg must be a multiple of 90, got {rotation_deg}")
    stored = [np.ascontiguousarray(np.rot90(f, k=-rotation_deg // 90)) for f in moving_face_frames(n_frames)]
    return write_clip(path, stored, rotation_deg=rotation_deg)


def vfr_timestamps(n_frames: int = 30) -> np.ndarray:
    """Per-frame timestamps of ``vfr_clip``: gaps alternate 1/15 s and 1/30 s, starting at 0.

    Returns:
        float64 (n_frames,), seconds.
    """
    gaps = np.where(np.arange(n_frames - 1) % 2 == 0, 1.0 / 15.0, 1.0 / 30.0)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def vfr_clip(path: PathLike, n_frames: int = 30) -> Path:
    """Writes the moving face with variable frame rate; timestamps are ``vfr_timestamps(n_frames)``."""
    return write_clip(path, moving_face_frames(n_frames), pts_s=vfr_timestamps(n_frames))


def other_container_clip(path: PathLike, n_frames: int = 30, codec: Optional[str] = None,
                         pix_fmt: str = "yuv420p") -> Path:
    """Writes the moving face in the container given by the suffix (default codec: MPEG-4 Part 2 for .avi,
    H.264 for .mkv) or with the given encoder and pixel format."""
    return write_clip(path, moving_face_frames(n_frames), codec=codec, pix_fmt=pix_fmt)


def corrupt_file(path: PathLike, n_bytes: int = 65536, seed: int = 0) -> Path:
    """Writes seeded random bytes under a video file name."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


def truncated_clip(path: PathLike, keep_fraction: float = 0.4, faststart: bool = True, n_frames: int = 60
                   ) -> Path:
    """Writes a real moving-face mp4 and keeps only its first ``keep_fraction`` of bytes.

    Args:
        faststart: True puts the index first, so the cut removes media data (a decoder can still play the
            start); False leaves the index at the end, so the cut removes it (the file cannot be opened).
    """
    path = Path(path)
    write_clip(path, moving_face_frames(n_frames), faststart=faststart)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def empty_file(path: PathLike) -> Path:
    """Writes a zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def not_a_video(path: PathLike) -> Path:
    """Writes a plain text file (typically named ``.mp4``)."""
    path = Path(path)
    path.write_text("This is a text file, not a video.\n" * 20)
    return path


def audio_only_file(path: PathLike, duration_s: float = 0.5, sample_rate: int = 16000) -> Path:
    """Writes a 440 Hz tone with no video stream (AAC, e.g. in .mp4)."""
    path = Path(path)
    n_samples = int(duration_s * sample_rate)
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(n_samples) / sample_rate)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        chunk = 1024
        for start in range(0, n_samples, chunk):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + chunk], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def damaged_middle_clip(path: PathLike, n_frames: int = 150, damaged_bytes: int = 50_000, seed: int = 0,
                        size: Tuple[int, int] = (640, 360)) -> Path:
    """Writes the moving-face mp4 (index at the end) and overwrites ``damaged_bytes`` of its middle with seeded
    random bytes: the container still opens and demuxes, the packets in the damaged stretch do not decode.

    The intact clip is ``moving_face_clip(path, n_frames, size)`` before the damage.
    """
    path = Path(path)
    moving_face_clip(path, n_frames, size)
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - damaged_bytes // 2
    data[start:start + damaged_bytes] = np.random.default_rng(seed).integers(0, 256, damaged_bytes,
                                                                              dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path

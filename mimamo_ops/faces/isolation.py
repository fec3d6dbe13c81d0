"""How the face stage of each video is guarded (``isolated_stage``): the settings and their defaults, light to
import (``beam_pipeline.flags`` reads the defaults without loading the face stack)."""
from dataclasses import dataclass

__all__ = ["DEFAULT_DEPTH_FRAMES", "DEFAULT_MAX_FRAME_PIXELS", "DEFAULT_STALL_TIMEOUT_S",
           "DEFAULT_VIDEO_MEMORY_BUDGET_MB", "IsolationConfig"]

# The face stage's peak grows by about 100-140 bytes per pixel of frame beyond its loaded models
# (bench/bench_face_memory.py, 3-frame clips: 103 at 1280x720, 110 at 1920x1080, 117 at 3840x2160; a 30-frame
# 3840x2160 clip: 142, the decoder's reference frames), about 1.1 GB for 4K. 10 Mpx lets every 4K video through
# (3840x2160 and DCI 4096x2160, either way up: 8.3 and 8.8 Mpx) and stops 5K and 8K frames (14.7 and 33.2 Mpx)
# and a 200 kB 8192x8192 file that took 4.5 GB (67.1 Mpx) before a frame is decoded.
DEFAULT_MAX_FRAME_PIXELS = 10_000_000
# About 1.5 times what a 10 Mpx video takes at 142 bytes per pixel (~1.35 GB).
DEFAULT_VIDEO_MEMORY_BUDGET_MB = 2048
DEFAULT_STALL_TIMEOUT_S = 300.0
DEFAULT_DEPTH_FRAMES = 64  # frames the face stage may run ahead of the networks


@dataclass(frozen=True)
class IsolationConfig:
    """How the face stage of each video is guarded.

    Attributes:
        enabled: run probe, decoding and the face stage in a supervised child process (``IsolatedFaceStage``);
            False runs them in the calling process (``InProcessFaceStage``), where a native crash takes the
            process down and the memory budget and stall timeout do not apply.
        max_frame_pixels: the largest frame accepted, width x height in pixels (checked before decoding; both
            modes).
        video_memory_budget_mb: the most the child process's resident memory may grow during one video, in MB
            (2**20 bytes), over what it held when the video began.
        stall_timeout_s: the longest wait for the child's next message (a frame, the probe's answer, the end),
            in seconds.
        start_timeout_s: the longest wait for a new child to load the face models, in seconds.
        depth_frames: frames the face stage may run ahead of its consumer (>= 1).
    """

    enabled: bool = True
    max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS
    video_memory_budget_mb: int = DEFAULT_VIDEO_MEMORY_BUDGET_MB
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    start_timeout_s: float = 600.0
    depth_frames: int = DEFAULT_DEPTH_FRAMES

    def __post_init__(self) -> None:
        if self.max_frame_pixels < 1:
            raise ValueError(f"max_frame_pixels must be >= 1 pixel, got {self.max_frame_pixels}")
        if self.video_memory_budget_mb < 1:
            raise ValueError(f"video_memory_budget_mb must be >= 1 MB, got {self.video_memory_budget_mb}")
        if not self.stall_timeout_s > 0 or not self.start_timeout_s > 0:
            raise ValueError(f"stall_timeout_s and start_timeout_s must be > 0 seconds, got "
                             f"{self.stall_timeout_s} and {self.start_timeout_s}")
        if self.depth_frames < 1:
            raise ValueError(f"depth_frames must be >= 1, got {self.depth_frames}")

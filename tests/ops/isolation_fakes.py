"""Face stages with real faults for the supervisor's tests (``tests/ops/test_isolated_stage.py``).

``FaultyFaces`` is built in the face stage's child process from its pickled class (so this module stays light
to import). It ignores the pixels and serves ``FRAMES`` frames with one fixed face each; the video's file name
picks a fault that strikes at frame ``FAULT_FRAME``:

* ``crash*``: a native crash: a read of address 0 through ctypes (the process dies with SIGSEGV);
* ``hang*``: a native hang: libc's ``pause()``, which never returns;
* ``grow*``: memory growth: from the first frame on, every 50 ms another 64 MB is allocated and touched, for
  up to ``GROW_FRAMES`` frames (1.5 GB), so that the parent's memory watch has time to act on a busy machine;
* ``fail*``: a Python ``VideoError``, after logging a warning;
* ``slow*``: appends each frame's index to the file named by ``$MIMAMO_TEST_PRODUCED`` as it is made (to see
  how far the child runs ahead of its consumer).

``CrashingFaces`` dies with SIGSEGV while it loads (in its constructor).
"""
import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Iterator, List

import numpy as np

from mimamo_ops.errors import VideoError
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FaceRecord, FrameFaces

FRAMES = 10
FAULT_FRAME = 3
GROW_BYTES = 64 << 20
GROW_FRAMES = 24
PRODUCED_ENV = "MIMAMO_TEST_PRODUCED"
LOGGER = logging.getLogger(__name__)


def fake_face(index: int) -> FaceRecord:
    """Face 0 of frame ``index``: a box, landmarks float32 (68, 2) and an aligned uint8 (112, 112, 3) crop that
    depend on the index."""
    crop = np.full((112, 112, 3), index % 256, np.uint8)
    landmarks = np.full((68, 2), float(index), np.float32)
    return FaceRecord(index, index / 30.0, 0, 0.9, (1.0, 2.0, 3.0 + index, 4.0), landmarks, crop)


def expected_frames() -> List[FrameFaces]:
    """What ``FaultyFaces`` serves for a video without a fault."""
    return [FrameFaces(index, index / 30.0, (fake_face(index),)) for index in range(FRAMES)]


class FaultyFaces(FaceExtractor):
    """The fake face stage (module docstring)."""

    def __init__(self, config: FaceConfig):
        self.config = config

    def extract(self, video_path: str, report=None) -> Iterator[FrameFaces]:
        name = Path(video_path).name
        held = []
        for index in range(GROW_FRAMES if name.startswith("grow") else FRAMES):
            if index == FAULT_FRAME and name.startswith("crash"):
                ctypes.string_at(0)
            if index == FAULT_FRAME and name.startswith("hang"):
                ctypes.CDLL(None).pause()
            if index == FAULT_FRAME and name.startswith("fail"):
                LOGGER.warning("%s: about to fail", video_path)
                raise VideoError(f"{video_path}: damaged at frame {index}")
            if name.startswith("grow"):
                held.append(np.ones(GROW_BYTES, np.uint8))
                time.sleep(0.05)
            if name.startswith("slow"):
                with open(os.environ[PRODUCED_ENV], "a", encoding="utf-8") as handle:
                    handle.write(f"{index}\n")
            yield FrameFaces(index, index / 30.0, (fake_face(index),))
        if report is not None:
            report.frames_decoded, report.frames_undecodable = FRAMES, 0


class CrashingFaces(FaultyFaces):
    """Dies with SIGSEGV while it loads."""

    def __init__(self, config: FaceConfig):
        super().__init__(config)
        ctypes.string_at(0)

"""Exception types raised for bad user input. Each message names the file and the cause."""


class MimamoError(Exception):
    """Base class of every error this project raises on purpose."""


class CheckpointError(MimamoError, ValueError):
    """A weights file is not what it should be (wrong model, missing keys, unsafe pickle)."""


class WeightsFetchError(MimamoError, OSError):
    """Official weights could not be downloaded or verified."""


class VideoError(MimamoError, ValueError):
    """A video cannot be opened or decoded (corrupt, empty, not a video)."""


class FaceStageError(MimamoError, RuntimeError):
    """The face extractor failed (OpenFace missing or crashed, landmark model missing)."""

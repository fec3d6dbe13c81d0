"""Videos that are not local files: a source that each reader opens afresh as a seekable binary stream.

A remote object too large for the worker's disk is decoded straight from storage: the caller (the pipeline's
storage layer) wraps it in a ``StreamSource`` whose ``open()`` returns its storage client's seekable stream, and
``mimamo_ops.decoding.video`` opens it once per pass (the probe, then the decode), closing what it opened.
"""
import abc
from typing import BinaryIO

__all__ = ["StreamSource"]


class StreamSource(abc.ABC):
    """A video read through seekable binary streams instead of a local path.

    Args:
        name: what messages and logs call the video (its URI); never a credential.
    """

    def __init__(self, name: str):
        self.name = name

    @abc.abstractmethod
    def open(self) -> BinaryIO:
        """A new stream positioned at byte 0, readable and seekable (``read``, ``seek``, ``tell``); the caller
        closes it.

        Raises:
            OSError: the video cannot be read (missing, storage error).
        """

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

"""Running a producer iterator ahead of its consumer in a background thread, with a bounded buffer."""
import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yields ``items`` in order while a background thread computes up to ``depth`` of them ahead.

    Used to let the face stage (dlib, PyAV; single-threaded, releasing the GIL in native code) work on the
    next frames while the networks run on the current ones. An exception raised by ``items`` is re-raised
    here, at the position where it happened. Closing the returned generator early stops the producer after
    its current item.

    Args:
        items: the producer; iterated in the background thread only.
        depth: the most items held between producer and consumer (>= 1); memory is bounded by it.
    """
    if depth < 1:
        raise ValueError(f"prefetch depth must be >= 1, got {depth}")
    buffer: "queue.Queue[object]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
            buffer.put(_DONE)
        except BaseException as error:  # pylint: disable=broad-except  # handed to the consumer
            buffer.put(_Failure(error))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()

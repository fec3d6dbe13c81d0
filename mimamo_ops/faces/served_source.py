"""A ``StreamSource`` of the parent process read by the face stage's child process, one byte range at a time.

The isolated face stage (``isolated_stage``) decodes in a child process, but a streamed video's storage client
(its endpoint, its credentials) lives in the parent. So the parent serves the video's bytes over a socket pair of
their own: ``SourceServer`` (a parent thread) answers the requests of ``ServedSource`` streams in the child. No
credential, option or client crosses to the child; only the video's name and its bytes do.

Requests (child -> parent) are ``(op, handle, offset, size)`` packed as ``!BIQQ``:

* ``OPEN``: opens the source being served (``SourceServer.serve``); the answer is its new handle and its size in
  bytes (``!IQ``);
* ``READ``: up to ``size`` bytes of handle ``handle`` from byte ``offset``; the answer is the bytes;
* ``CLOSE``: closes handle ``handle``; the answer is empty.

Answers (parent -> child) are ``(status, length)`` as ``!BQ`` then ``length`` bytes: status 0 is the answer,
status 1 an error message (UTF-8) that the child raises as ``OSError``.
"""
import io
import logging
import socket
import struct
import threading
from typing import BinaryIO, Dict, Optional

from mimamo_ops.decoding.sources import StreamSource

__all__ = ["ServedSource", "SourceServer", "receive_exactly", "source_client"]

LOGGER = logging.getLogger(__name__)

OPEN, READ, CLOSE = 0, 1, 2
_REQUEST = struct.Struct("!BIQQ")
_ANSWER = struct.Struct("!BQ")
_OPENED = struct.Struct("!IQ")
_OK, _ERROR = 0, 1
READ_BUFFER_BYTES = 1 << 20  # the child reads ahead in 1 MiB requests (one round trip each)


def receive_exactly(sock: socket.socket, size: int) -> bytearray:
    """The next ``size`` bytes from a stream socket. Raises ``EOFError`` when the other side closed it first."""
    data = bytearray(size)
    view = memoryview(data)
    done = 0
    while done < size:
        count = sock.recv_into(view[done:])
        if count == 0:
            raise EOFError("the other process closed the socket")
        done += count
    return data


def _stream_size(stream: BinaryIO) -> int:
    end = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return end


class SourceServer:
    """The parent's end: a daemon thread that answers one child's byte requests for the source being served.

    Args:
        sock: the parent's end of the socket pair; closed by ``close()``.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()
        self._source: Optional[StreamSource] = None
        self._streams: Dict[int, BinaryIO] = {}
        self._next_handle = 1
        self._thread = threading.Thread(target=self._run, name="face-stage-source-server", daemon=True)
        self._thread.start()

    def serve(self, source: Optional[StreamSource]) -> None:
        """Serves ``source`` from now on (None: nothing); streams of the previous source are closed."""
        with self._lock:
            streams, self._streams = self._streams, {}
            self._source = source
        for stream in streams.values():
            _close_quietly(stream)

    def close(self) -> None:
        """Stops serving and closes the socket (the thread ends on its next receive)."""
        self.serve(None)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            while True:
                op, handle, offset, size = _REQUEST.unpack(receive_exactly(self._sock, _REQUEST.size))
                try:
                    answer = self._answer(op, handle, offset, size)
                except Exception as error:  # pylint: disable=broad-except  # the child raises it as OSError
                    message = f"{type(error).__name__}: {error}".encode("utf-8", "replace")
                    self._sock.sendall(_ANSWER.pack(_ERROR, len(message)) + message)
                    continue
                self._sock.sendall(_ANSWER.pack(_OK, len(answer)) + answer)
        except (EOFError, OSError):  # the child is gone, or close() shut the socket
            pass

    def _answer(self, op: int, handle: int, offset: int, size: int) -> bytes:
        if op == OPEN:
            with self._lock:
                source = self._source
            if source is None:
                raise OSError("no video is being served")
            stream = source.open()
            try:
                total = _stream_size(stream)
            except Exception:
                _close_quietly(stream)
                raise
            with self._lock:
                if self._source is not source:  # served another video meanwhile
                    _close_quietly(stream)
                    raise OSError(f"{source.name}: no longer served")
                handle, self._next_handle = self._next_handle, self._next_handle + 1
                self._streams[handle] = stream
            return _OPENED.pack(handle, total)
        with self._lock:
            stream = self._streams.get(handle) if op == READ else self._streams.pop(handle, None)
        if op == CLOSE:
            if stream is not None:
                _close_quietly(stream)
            return b""
        if stream is None:
            raise OSError(f"stream {handle} is not open")
        stream.seek(offset)
        return stream.read(size)


def _close_quietly(stream: BinaryIO) -> None:
    try:
        stream.close()
    except Exception:  # pylint: disable=broad-except  # closing a finished read must not fail a video
        LOGGER.debug("closing a served stream failed", exc_info=True)


class _Client:
    """The child's end of the socket pair: one request and its answer at a time."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._lock = threading.Lock()

    def request(self, op: int, handle: int = 0, offset: int = 0, size: int = 0) -> bytes:
        with self._lock:
            self._sock.sendall(_REQUEST.pack(op, handle, offset, size))
            status, length = _ANSWER.unpack(receive_exactly(self._sock, _ANSWER.size))
            payload = bytes(receive_exactly(self._sock, length))
        if status != _OK:
            raise OSError(payload.decode("utf-8", "replace"))
        return payload


class _ServedStream(io.RawIOBase):
    """One opened handle of the served source, read by byte ranges."""

    def __init__(self, client: _Client, handle: int, size: int, name: str):
        super().__init__()
        self._client = client
        self._handle = handle
        self._size = size
        self._position = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        data = self._client.request(READ, self._handle, self._position, wanted)
        buffer[:len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._client.request(CLOSE, self._handle)
            except (EOFError, OSError):
                pass
        super().close()


class ServedSource(StreamSource):
    """The child's view of the video the parent serves: each ``open()`` is a new handle on the parent's side.

    Args:
        name: the video's name (its URI), for messages.
        client: the child's end of the source socket pair.
    """

    def __init__(self, name: str, client: _Client):
        super().__init__(name)
        self._client = client

    def open(self) -> BinaryIO:
        handle, size = _OPENED.unpack(self._client.request(OPEN))
        return io.BufferedReader(_ServedStream(self._client, handle, size, self.name), READ_BUFFER_BYTES)



def source_client(fd: int) -> _Client:
    """The client on the child's end of the source socket pair (file descriptor ``fd``), for ``ServedSource``."""
    return _Client(socket.socket(fileno=fd))

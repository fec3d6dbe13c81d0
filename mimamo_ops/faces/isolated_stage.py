"""Probe, decoding and the face stage of each video in a supervised child process, so that a native crash, a hang
or a memory blow-up costs that video only.

FFmpeg, dlib, OpenCV and OpenVINO are native code: a segmentation fault in any of them kills the process it runs
in, and with it every other video of a pipeline worker (a runner retries the bundle, meets the same file and
fails the job). ``IsolatedFaceStage`` therefore runs them in a long-lived child process (a fresh interpreter,
``subprocess`` with a socket pair: no ``fork`` of a process that runs torch and OpenVINO threads; in a process group
of its own, so that Ctrl-C is the parent's to handle and a kill also ends what the child started), which loads the
face models once and serves one video at a time:

    parent -> child: ("video", path), ("served_video", name), ("credit", n), ("cancel", None), ("stop", None)
    child -> parent: ("ready", None), ("info", VideoInfo), ("frame", FrameFaces) ..., ("end", DecodeReport),
                     ("error", packed exception), ("failed", packed exception), ("cancelled", None), ("log", record)

A video given as a ``StreamSource`` (a remote object streamed from storage) is read by the child through a second
socket pair: the parent serves its bytes (``served_source``), so the storage client and its credentials stay in
the parent. The child probes the video (``probe_video``, which checks the frame size before decoding any frame), then streams
one ``FrameFaces`` per decoded frame (the aligned uint8 crops and their facts) and finally the ``DecodeReport``. It
runs ahead of the parent by at most ``depth_frames`` frames (credits: the parent grants frames as it takes them),
so the parent's networks work on one frame while the child decodes and finds faces in the next ones; this
replaces the prefetch thread of the in-process stage. The child takes the same thread budget as the parent.

The parent supervises the child while it waits for it:

* the child dies (a signal or an exit): the video fails with ``"<file>: face stage crashed: SIGSEGV (after frame
  12)"``, and a fresh child is started at once for the next video;
* no message for ``stall_timeout_s`` while the parent waits: the child is killed and the video fails with
  ``"<file>: no new frame for 300 s (after frame 12)"``;
* the child's resident memory grows more than ``video_memory_budget_mb`` over what it held when the video began
  (read from ``/proc/<pid>/statm`` every ``_MEMORY_POLL_S`` by a thread of the parent, so also while the parent
  computes): the child is killed and the video fails with ``"<file>: face stage over its memory budget ..."``.
  (An address-space limit, ``RLIMIT_AS``, is no use here: torch and OpenVINO reserve far more than they touch.)

Python exceptions raised in the child (``VideoError``, ``FaceStageError``, ...) come back as themselves with their
message, from ``open_video`` when the probe raised them and from the frame iterator when decoding or the face stage
did; the child's traceback is attached as a note. Log records of the child are re-emitted by the parent's
loggers of the same names.

``InProcessFaceStage`` runs the same steps in the calling process (a background thread runs the face stage ahead),
without the supervision; ``open_face_stage`` picks one by ``IsolationConfig.enabled``.
"""
import abc
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable, Iterator, Optional, Tuple

from mimamo_ops.decoding.sources import StreamSource
from mimamo_ops.decoding.video import DecodeReport, VideoInfo, VideoSource, probe_video
from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FrameFaces
from mimamo_ops.faces.served_source import ServedSource, SourceServer, receive_exactly, source_client
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.runtime.prefetch import prefetch
from mimamo_ops.runtime.threads import apply_thread_budget

__all__ = ["FaceStage", "InProcessFaceStage", "IsolatedFaceStage", "IsolationConfig", "OpenedVideo",
           "open_face_stage", "serve_child"]

LOGGER = logging.getLogger(__name__)

_MEMORY_POLL_S = 0.1  # how often the parent reads the child's resident set size
_STOP_WAIT_S = 5.0  # how long a child may take to exit when asked before it is killed
_MB = 1 << 20
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_HEADER = struct.Struct("!Q")  # message length in bytes, before each pickled message
# A process group of its own (Python 3.10 has no process_group: a session of its own is one too).
_OWN_PROCESS_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
# The child's path starts with the folder that holds this package, in place of the working directory that ``-c``
# puts first: another mimamo_ops in the folder a run starts from must not be the one the child runs.
_CHILD_MAIN = ("import sys; sys.path[0] = sys.argv[1]; from mimamo_ops.faces.isolated_stage import serve_child; "
               "serve_child(int(sys.argv[2]), int(sys.argv[3]))")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class OpenedVideo:
    """A video whose probe succeeded; its frames stream from ``frames``.

    Attributes:
        path: the local file, or the name of the ``StreamSource``.
        info: what the probe read (``VideoInfo``: size, fps, frame count, ...).
        report: the decoder's damage counts, filled in once ``frames`` is exhausted.
        frames: one ``FrameFaces`` per decoded frame, in order. Raises ``VideoError`` or ``FaceStageError`` (or
            whatever the face stage raised) when decoding or the face stage fails part-way. Closing it early
            stops the work on this video.
    """

    def __init__(self, path: str, info: VideoInfo, report: DecodeReport, frames: Iterator[FrameFaces]):
        self.path = path
        self.info = info
        self.report = report
        self.frames = frames


class FaceStage(abc.ABC):
    """Probe, decoding and the face stage of one video at a time (``IsolatedFaceStage``, ``InProcessFaceStage``).

    Use: ``start()`` (begins loading the face models), ``wait_ready()``, then ``open_video(source)`` per video, and
    ``close()`` at the end (also as a context manager).
    """

    @abc.abstractmethod
    def start(self) -> None:
        """Begins loading the face models (in the background where the implementation can)."""

    @abc.abstractmethod
    def wait_ready(self) -> None:
        """Returns once the face models are loaded.

        Raises:
            FaceStageError: the face stage cannot be built (models missing, or its process died loading them).
        """

    @abc.abstractmethod
    def open_video(self, source: VideoSource) -> OpenedVideo:
        """Probes ``source`` (a local path, or a ``StreamSource`` for the built-in stages) and starts its decoding
        and face stage.

        Raises:
            VideoError: the file cannot be opened, is not a video, or its frames are over ``max_frame_pixels``.
            FaceStageError: the face stage's process crashed, stalled or went over its memory budget.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stops the work and frees the face stage."""

    def __enter__(self) -> "FaceStage":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_face_stage(config: FaceConfig, threads: int, isolation: IsolationConfig,
                    extractor_factory: Callable[[FaceConfig], FaceExtractor] = make_face_extractor) -> FaceStage:
    """The face stage ``isolation`` asks for (not started).

    Args:
        config: the face stage's settings.
        threads: the thread budget of each library (``mimamo_ops.runtime.threads``), applied in the child process.
        isolation: whether and how the stage is isolated.
        extractor_factory: builds the face extractor from ``config``; for the isolated stage it must be picklable
            (a module-level function or class), as it is called in the child process.
    """
    if isolation.enabled:
        return IsolatedFaceStage(config, threads, isolation, extractor_factory)
    return InProcessFaceStage(config, isolation, extractor_factory)


class InProcessFaceStage(FaceStage):
    """Probe, decoding and the face stage in the calling process; a background thread runs the face stage up to
    ``isolation.depth_frames`` frames ahead (``mimamo_ops.runtime.prefetch``). Only ``max_frame_pixels`` of
    ``isolation`` applies."""

    def __init__(self, config: FaceConfig, isolation: IsolationConfig,
                 extractor_factory: Callable[[FaceConfig], FaceExtractor] = make_face_extractor):
        self._config = config
        self._isolation = isolation
        self._extractor_factory = extractor_factory
        self._extractor: Optional[FaceExtractor] = None

    def start(self) -> None:
        if self._extractor is None:
            self._extractor = self._extractor_factory(self._config)

    def wait_ready(self) -> None:
        self.start()

    def open_video(self, source: VideoSource) -> OpenedVideo:
        self.start()
        info = probe_video(source, max_frame_pixels=self._isolation.max_frame_pixels)
        report = DecodeReport()
        frames = prefetch(self._extractor.extract(source, report=report), self._isolation.depth_frames)
        return OpenedVideo(str(source), info, report, frames)

    def close(self) -> None:
        self._extractor = None


class _Channel:
    """Pickled messages over a connected stream socket, each behind its length (8 bytes, big-endian)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._send_lock = threading.Lock()
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)

    def send(self, message: tuple) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self._sock.sendall(_HEADER.pack(len(data)) + data)

    def poll(self, timeout_s: float) -> bool:
        """True when a message (or the end of the stream) can be read within ``timeout_s`` seconds."""
        return bool(self._poller.poll(max(0.0, timeout_s) * 1000.0))

    def recv(self) -> tuple:
        """The next message. Raises ``EOFError`` when the other side closed the stream."""
        (size,) = _HEADER.unpack(receive_exactly(self._sock, _HEADER.size))
        return pickle.loads(receive_exactly(self._sock, size))

    def close(self) -> None:
        self._sock.close()


def _pack_error(error: BaseException) -> Tuple[Optional[bytes], str, str, str]:
    """(pickled exception or None, type name, message, formatted traceback) of an exception in the child."""
    text = "".join(traceback.format_exception(error))
    try:
        data = pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
    except Exception:  # pylint: disable=broad-except  # an exception that does not survive pickling
        data = None
    return data, type(error).__name__, str(error), text


def _unpack_error(packed: Tuple[Optional[bytes], str, str, str]) -> Exception:
    """The child's exception as raised there (else a ``FaceStageError`` with its type and message)."""
    data, type_name, message, text = packed
    error = None
    if data is not None:
        try:
            error = pickle.loads(data)
        except Exception:  # pylint: disable=broad-except  # its class cannot be imported here
            error = None
    if not isinstance(error, Exception):
        error = FaceStageError(f"{type_name}: {message}")
    LOGGER.debug("raised in the face stage process:\n%s", text.rstrip())
    if hasattr(error, "add_note"):  # Python 3.11+
        error.add_note(f"raised in the face stage process:\n{text.rstrip()}")
    return error


def _resident_bytes(pid: int) -> Optional[int]:
    """Resident set size of process ``pid`` in bytes (``/proc/<pid>/statm``), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _MemoryWatch:
    """A parent thread that kills the child once its resident set is over ``limit_bytes`` (when set)."""

    def __init__(self, pid: int, interval_s: float = _MEMORY_POLL_S):
        self.pid = pid
        self.limit_bytes: Optional[int] = None
        self.reason: Optional[str] = None
        self._start_bytes = 0
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"face-stage-memory-{pid}", daemon=True)
        self._thread.start()

    def watch(self, start_bytes: int, budget_bytes: int) -> None:
        """Allows ``budget_bytes`` over ``start_bytes`` (the resident set when the video began)."""
        self._start_bytes = start_bytes
        self.limit_bytes = start_bytes + budget_bytes

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            resident = _resident_bytes(self.pid)
            if resident is None:
                return
            limit = self.limit_bytes
            if limit is not None and resident > limit:
                # The growth is rounded up: it is over the budget, so it never reads as equal to it.
                grown_mb = -(-(resident - self._start_bytes) // _MB)
                self.reason = (f"face stage over its memory budget of {(limit - self._start_bytes) // _MB} MB: "
                               f"{grown_mb} MB more than when the video began, "
                               f"{resident // _MB} MB resident")
                os.kill(self.pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        """Stops the thread (before the child is reaped, so that its pid cannot be another process's)."""
        self._stop.set()
        self._thread.join()


class _Child:
    """One child process, its channel, the server of its streamed videos' bytes and its memory watch."""

    def __init__(self, process: subprocess.Popen, channel: _Channel, sources: SourceServer):
        self.process = process
        self.channel = channel
        self.sources = sources
        self.memory = _MemoryWatch(process.pid)
        self.ready_bytes: Optional[int] = None  # resident set once the models were loaded

    def stop(self, kill: bool) -> Optional[int]:
        """Ends the process (asked to stop, or killed, with its process group) and returns its exit status
        (negative: a signal)."""
        if not kill and self.process.poll() is None:
            try:
                self.channel.send(("stop", None))
            except OSError:
                pass
            try:
                self.process.wait(_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        self.memory.stop()
        if self.process.returncode is None:  # not reaped yet, so its process group is still its own
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # with whatever it started (the OpenFace binary)
            except ProcessLookupError:
                pass
        code = self.process.wait()
        self.channel.close()
        self.sources.close()
        return code


class IsolatedFaceStage(FaceStage):
    """Probe, decoding and the face stage of each video in a supervised child process (module docstring).

    Not thread-safe: one instance serves one caller (a DoFn instance), one video at a time.

    Args:
        config: the face stage's settings.
        threads: the thread budget the child applies to every library before loading the models.
        isolation: limits and timeouts.
        extractor_factory: builds the face extractor in the child; picklable (a module-level function or class).
        clock: monotonic clock in seconds (injected in unit tests).
    """

    def __init__(self, config: FaceConfig, threads: int, isolation: IsolationConfig = IsolationConfig(),
                 extractor_factory: Callable[[FaceConfig], FaceExtractor] = make_face_extractor,
                 clock: Callable[[], float] = time.monotonic):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._config = config
        self._threads = threads
        self._isolation = isolation
        self._extractor_factory = extractor_factory
        self._clock = clock
        self._child: Optional[_Child] = None
        self._streaming: Optional["_VideoStream"] = None  # the video whose frames the child may still send

    @property
    def pid(self) -> Optional[int]:
        """The child process's id, or None when none runs."""
        return None if self._child is None else self._child.process.pid

    def start(self) -> None:
        if self._child is not None:
            return
        parent_end, child_end = socket.socketpair()
        sources_end, child_sources_end = socket.socketpair()
        child_fds = (child_end.fileno(), child_sources_end.fileno())
        try:
            process = subprocess.Popen(  # pylint: disable=consider-using-with  # lives until stop()
                [sys.executable, "-c", _CHILD_MAIN, _PACKAGE_ROOT, *map(str, child_fds)], pass_fds=child_fds,
                stdin=subprocess.DEVNULL, **_OWN_PROCESS_GROUP)
        except BaseException:
            parent_end.close()
            sources_end.close()
            raise
        finally:
            child_end.close()
            child_sources_end.close()
        channel = _Channel(parent_end)
        self._child = _Child(process, channel, SourceServer(sources_end))
        LOGGER.info("face stage process %d started", process.pid)
        # first the import path, so that the second message's factory unpickles (a test's class, say)
        self._send(("init", {"sys_path": list(sys.path), "parent_pid": os.getpid()}))
        self._send(("build", {
            "config": self._config,
            "extractor_factory": self._extractor_factory,
            "threads": self._threads,
            "max_frame_pixels": self._isolation.max_frame_pixels,
            "depth_frames": self._isolation.depth_frames,
            "log_level": logging.getLogger("mimamo_ops").getEffectiveLevel(),
        }))

    def wait_ready(self) -> None:
        self.start()
        child = self._child
        if child.ready_bytes is not None:
            return
        deadline = self._clock() + self._isolation.start_timeout_s
        while True:
            if not child.channel.poll(min(1.0, deadline - self._clock())):
                if self._clock() < deadline:
                    continue
                self._discard_child(kill=True)
                raise FaceStageError(f"the face stage process did not load its models in "
                                     f"{self._isolation.start_timeout_s:g} s")
            try:
                kind, value = child.channel.recv()
            except (EOFError, OSError):
                code = self._discard_child(kill=True)
                raise FaceStageError(f"the face stage process died while loading its models: "
                                     f"{self._describe_exit(code)}") from None
            if kind == "log":
                _emit_log(value)
            elif kind == "failed":
                self._discard_child(kill=False)
                raise _unpack_error(value)
            elif kind == "ready":
                child.ready_bytes = _resident_bytes(child.process.pid) or 0
                LOGGER.info("face stage process %d ready (%d MB resident)", child.process.pid,
                            child.ready_bytes // _MB)
                return

    def open_video(self, source: VideoSource) -> OpenedVideo:
        if self._streaming is not None:
            self._streaming.abandon()
        self._restart_if_bloated()
        self.wait_ready()
        child = self._child
        start_bytes = _resident_bytes(child.process.pid) or 0
        child.memory.watch(start_bytes, self._isolation.video_memory_budget_mb * _MB)
        path = str(source)
        if isinstance(source, StreamSource):
            child.sources.serve(source)
            self._send(("served_video", source.name))
        else:
            child.sources.serve(None)
            self._send(("video", os.fspath(source)))
        stream = _VideoStream(self, path)
        kind, value = stream.receive("while probing")
        if kind == "error":
            raise _unpack_error(value)
        if kind != "info":
            raise FaceStageError(f"{path}: the face stage process answered {kind!r} to a probe")
        self._streaming = stream
        return OpenedVideo(path, value, stream.report, stream.frames())

    def close(self) -> None:
        if self._streaming is not None:
            self._streaming.abandon()
        self._discard_child(kill=False)

    def _restart_if_bloated(self) -> None:
        """Replaces an idle child that kept more than the budget over its loaded size (a leak across videos)."""
        child = self._child
        if child is None or child.ready_bytes is None:
            return
        resident = _resident_bytes(child.process.pid) or 0
        if resident > child.ready_bytes + self._isolation.video_memory_budget_mb * _MB:
            LOGGER.warning("face stage process %d holds %d MB between videos (%d MB after loading); restarting it",
                           child.process.pid, resident // _MB, child.ready_bytes // _MB)
            self._discard_child(kill=True)

    def _send(self, message: tuple) -> None:
        """Sends to the child; a dead child is found by the next receive, so a broken channel is ignored here."""
        try:
            self._child.channel.send(message)
        except OSError:
            pass

    def _discard_child(self, kill: bool) -> Optional[int]:
        """Ends the child (if any) and forgets it; returns its exit status."""
        child, self._child, self._streaming = self._child, None, None
        if child is None:
            return None
        code = child.stop(kill)
        LOGGER.info("face stage process %d ended (%s)", child.process.pid, self._describe_exit(code))
        return code

    @staticmethod
    def _describe_exit(code: Optional[int]) -> str:
        if code is None:
            return "not running"
        if code < 0:
            return _signal_name(-code)
        return f"exit status {code}"

    def _lost_child(self, path: str, where: str, stalled: bool) -> FaceStageError:
        """Ends a child that died, stalled or was killed for memory; starts the next one; the video's error."""
        child = self._child
        code = self._discard_child(kill=True)
        memory_reason = child.memory.reason if child is not None else None
        if memory_reason is not None:
            message = f"{path}: {memory_reason} ({where})"
        elif stalled:
            message = f"{path}: no new frame for {self._isolation.stall_timeout_s:g} s ({where}); the face stage " \
                      "process was stopped"
        elif code is not None and code < 0:
            message = f"{path}: face stage crashed: {_signal_name(-code)} ({where})"
        else:
            message = f"{path}: face stage process ended with {self._describe_exit(code)} ({where})"
        LOGGER.warning("%s", message)
        self.start()  # the next video's process loads its models meanwhile
        return FaceStageError(message)


class _VideoStream:
    """The parent's side of one video: receives its messages, grants credits, abandons it when closed early."""

    def __init__(self, stage: IsolatedFaceStage, path: str):
        self._stage = stage
        self._child = stage._child  # pylint: disable=protected-access
        self.path = path
        self.report = DecodeReport()
        self._last_index: Optional[int] = None
        self._done = False

    def _where(self) -> str:
        return "before the first frame" if self._last_index is None else f"after frame {self._last_index}"

    def receive(self, where: str) -> tuple:
        """The child's next message other than a log record; a lost child raises ``FaceStageError``."""
        stage = self._stage
        deadline = stage._clock() + stage._isolation.stall_timeout_s  # pylint: disable=protected-access
        while True:
            if stage._child is not self._child:  # pylint: disable=protected-access
                raise FaceStageError(f"{self.path}: the face stage process was replaced ({where})")
            channel = self._child.channel
            if not channel.poll(min(1.0, deadline - stage._clock())):  # pylint: disable=protected-access
                if stage._clock() < deadline:  # pylint: disable=protected-access
                    continue
                raise stage._lost_child(self.path, where, stalled=True)  # pylint: disable=protected-access
            try:
                kind, value = channel.recv()
            except (EOFError, OSError):
                raise stage._lost_child(self.path, where, stalled=False) from None  # pylint: disable=protected-access
            if kind == "log":
                _emit_log(value)
                continue
            return kind, value

    def frames(self) -> Iterator[FrameFaces]:
        """The video's frames (``OpenedVideo.frames``); grants the child credit as frames are taken."""
        stage = self._stage
        refill = max(1, stage._isolation.depth_frames // 2)  # pylint: disable=protected-access
        taken = 0
        try:
            while True:
                kind, value = self.receive(self._where())
                if kind == "frame":
                    self._last_index = value.index
                    taken += 1
                    if taken >= refill:
                        stage._send(("credit", taken))  # pylint: disable=protected-access
                        taken = 0
                    yield value
                elif kind == "end":
                    self._finish()
                    self.report.frames_decoded = value.frames_decoded
                    self.report.frames_undecodable = value.frames_undecodable
                    self.report.warning = value.warning
                    return
                elif kind == "error":
                    self._finish()
                    raise _unpack_error(value)
                else:
                    raise FaceStageError(f"{self.path}: unexpected message {kind!r} from the face stage process")
        finally:
            if not self._done:
                self.abandon()

    def _finish(self) -> None:
        self._done = True
        if self._stage._streaming is self:  # pylint: disable=protected-access
            self._stage._streaming = None  # pylint: disable=protected-access

    def abandon(self) -> None:
        """Stops the child's work on this video (it finishes its current frame), or ends the child."""
        if self._done:
            return
        self._finish()
        stage = self._stage
        if stage._child is not self._child:  # pylint: disable=protected-access
            return
        stage._send(("cancel", None))  # pylint: disable=protected-access
        try:
            while True:
                kind, _ = self.receive("while stopping")
                if kind in ("cancelled", "end", "error"):
                    return
        except FaceStageError as error:
            LOGGER.warning("%s", error)


def _emit_log(fields: dict) -> None:
    """Re-emits a log record of the child process through this process's logger of the same name."""
    record = logging.makeLogRecord(fields)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class _ForwardingHandler(logging.Handler):
    """The child's log handler: sends each record's fields to the parent."""

    def __init__(self, channel: _Channel):
        super().__init__()
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(record.__dict__)
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = logging.Formatter().formatException(record.exc_info)
            fields["exc_info"] = None
            fields["stack_info"] = None
            self._channel.send(("log", {key: value for key, value in fields.items() if _is_plain(value)}))
        except Exception:  # pylint: disable=broad-except  # logging must never break the work
            self.handleError(record)


def _is_plain(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _exit_with_parent(parent_pid: int) -> None:
    """A child thread that ends the child once its parent is gone (a killed worker leaves no orphan behind)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)  # pylint: disable=protected-access

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve_child(fd: int, sources_fd: int) -> None:
    """The child process's main loop: loads the face stage, then serves videos until told to stop.

    Args:
        fd: the file descriptor of the child's end of the message socket pair.
        sources_fd: the file descriptor of the child's end of the socket pair that streamed videos are read
            through (``served_source``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (a watch run finishes its batch)
    channel = _Channel(socket.socket(fileno=fd))
    try:
        _serve(channel, source_client(sources_fd))
    except (EOFError, OSError):  # the parent closed the channel or is gone
        pass


def _serve(channel: _Channel, sources) -> None:
    kind, init = channel.recv()
    if kind != "init":
        raise RuntimeError(f"the face stage process expected 'init', got {kind!r}")
    sys.path[:] = init["sys_path"]
    _exit_with_parent(init["parent_pid"])
    kind, build = channel.recv()
    root = logging.getLogger()
    root.handlers[:] = [_ForwardingHandler(channel)]
    root.setLevel(build["log_level"])
    try:
        apply_thread_budget(build["threads"])
        extractor = build["extractor_factory"](build["config"])
    except Exception as error:  # pylint: disable=broad-except  # reported to the parent
        channel.send(("failed", _pack_error(error)))
        return
    channel.send(("ready", None))
    while True:
        kind, value = channel.recv()
        if kind == "stop":
            return
        if kind in ("video", "served_video"):
            source = value if kind == "video" else ServedSource(value, sources)
            _serve_video(channel, extractor, source, build["max_frame_pixels"], build["depth_frames"])
        # credits and cancels that arrive after a video ended are stale: nothing to do


def _serve_video(channel: _Channel, extractor: FaceExtractor, path: VideoSource, max_frame_pixels: int,
                 depth_frames: int) -> None:
    """Probes one video and streams its frames within the parent's credit; errors go to the parent."""
    try:
        info = probe_video(path, max_frame_pixels=max_frame_pixels)
    except Exception as error:  # pylint: disable=broad-except  # reported to the parent
        channel.send(("error", _pack_error(error)))
        return
    channel.send(("info", info))
    report = DecodeReport()
    frames = extractor.extract(path, report=report)
    credit, sent = depth_frames, 0
    try:
        while True:
            try:
                frame = next(frames, None)
            except Exception as error:  # pylint: disable=broad-except  # reported to the parent
                channel.send(("error", _pack_error(error)))
                return
            if frame is None:
                break
            while sent >= credit or channel.poll(0.0):
                kind, value = channel.recv()
                if kind == "credit":
                    credit += value
                elif kind == "cancel":
                    channel.send(("cancelled", None))
                    return
            channel.send(("frame", frame))
            sent += 1
    finally:
        frames.close()
    channel.send(("end", report))

"""Warnings raised by libraries go to the log, not to the console.

Apache Beam's dependencies warn as they load: the Google Cloud clients print ``FutureWarning``\\ s about the Python
and grpcio versions, which a user of ``mimamo`` can do nothing about. Each entry point calls
:func:`log_library_warnings` before it imports them. From then on:

* a warning raised from a library's code becomes a record of the ``py.warnings`` logger (as
  ``logging.captureWarnings`` makes it) and never reaches the console; a run's log file gets it through
  :func:`attach_log_file`, which also hands it the records raised before the file was open (the last
  :data:`HELD_RECORDS`); without a log file it goes nowhere;
* a warning raised from this project's code (``beam_pipeline``, ``mimamo_ops``: legal input that loses
  precision) is still printed on stderr as Python prints it;
* an exception that ends a library's thread (no frame of its traceback in this project's code) is logged the
  same way, with its traceback, instead of printed on stderr by ``threading.excepthook``. In a
  ``--environment_type=LOOPBACK`` job on Flink or Spark, each time the runner closes an environment (after a
  task, or at the job's end) the gRPC reader threads of Beam's in-process SDK harness end with ``CANCELLED:
  Multiplexer hanging up`` or ``UNAVAILABLE: Socket closed``. An exception in a thread of this project's code is
  still printed as Python prints it;
* the Python processes this one starts (the local runner's worker processes with ``--n_workers``) ignore
  ``FutureWarning`` and ``DeprecationWarning`` (:data:`CHILD_WARNINGS_FILTER`, through ``PYTHONWARNINGS``, unless it
  is set already): they load the same libraries and raise the same warnings, which this process has logged.

Only the standard library is imported here, so ``mimamo --help`` stays fast.
"""
import collections
import logging
import os
import threading
import traceback
import warnings
from typing import Optional, TextIO, Tuple

import mimamo_ops

__all__ = ["log_library_warnings", "attach_log_file", "detach_log_file", "is_project_file", "LOGGER_NAME",
           "HELD_RECORDS", "CHILD_WARNINGS_FILTER"]

LOGGER_NAME = "py.warnings"  # the logger logging.captureWarnings uses
HELD_RECORDS = 100  # library warnings kept for a log file opened later
CHILD_WARNINGS_FILTER = "ignore::FutureWarning,ignore::DeprecationWarning"  # PYTHONWARNINGS of child processes

_PROJECT_DIRS: Tuple[str, ...] = tuple(  # beam_pipeline/ and mimamo_ops/, each with a trailing separator
    os.path.join(os.path.realpath(os.path.dirname(path)), "") for path in (__file__, mimamo_ops.__file__)
)


class _HeldRecords(logging.Handler):
    """Keeps the last ``HELD_RECORDS`` records it handles, for a log file opened later."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: collections.deque = collections.deque(maxlen=HELD_RECORDS)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_held = _HeldRecords()
_show_on_console = warnings.showwarning  # Python's own, as it was before log_library_warnings
_print_thread_error = threading.excepthook  # likewise


def is_project_file(filename: str) -> bool:
    """Whether ``filename`` (a warning's source file) belongs to ``beam_pipeline`` or ``mimamo_ops``."""
    return os.path.realpath(filename).startswith(_PROJECT_DIRS)


def _show_warning(message, category, filename: str, lineno: int, file: Optional[TextIO] = None,
                  line: Optional[str] = None) -> None:
    """``warnings.showwarning`` replacement: the project's warnings to the console, libraries' to the log."""
    if file is not None or is_project_file(filename):
        _show_on_console(message, category, filename, lineno, file, line)
        return
    text = warnings.formatwarning(message, category, filename, lineno, line)
    logging.getLogger(LOGGER_NAME).warning("%s", text.rstrip())


def _log_library_thread_error(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook`` replacement: a library's thread error to the log, the project's to stderr."""
    frames = traceback.extract_tb(args.exc_traceback) if args.exc_traceback is not None else []
    if args.exc_type is SystemExit or any(is_project_file(frame.filename) for frame in frames):
        _print_thread_error(args)
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger(LOGGER_NAME).warning("exception in thread %s of a library", name,
                                           exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def log_library_warnings() -> None:
    """Routes warnings raised by libraries, and exceptions that end their threads, to the ``py.warnings``
    logger, off the console (module docstring).

    Call it before importing the libraries (their warnings are raised as they load). Calling it again changes
    nothing.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False  # a console handler on the root logger would print them
    if _held not in logger.handlers:
        logger.addHandler(_held)
    warnings.showwarning = _show_warning
    threading.excepthook = _log_library_thread_error
    os.environ.setdefault("PYTHONWARNINGS", CHILD_WARNINGS_FILTER)


def attach_log_file(handler: logging.Handler) -> None:
    """Sends library warnings to ``handler`` (a run's log file) too, starting with the ones held so far."""
    logger = logging.getLogger(LOGGER_NAME)
    if handler in logger.handlers:
        return
    for record in list(_held.records):
        if record.levelno >= handler.level:
            handler.handle(record)
    logger.addHandler(handler)


def detach_log_file(handler: logging.Handler) -> None:
    """Stops sending library warnings to ``handler`` (a no-op when it was not attached)."""
    logging.getLogger(LOGGER_NAME).removeHandler(handler)

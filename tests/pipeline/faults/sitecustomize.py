"""Fault injection for end-to-end tests, loaded by every Python process started with this folder on
``PYTHONPATH`` (as ``tests/cluster/probe/sitecustomize.py`` is).

``$MIMAMO_FAULTS`` lists faults as ``NAME=KIND@N`` separated by ``;``: the N-th call of ``av.open`` on a file
whose base name is NAME in a process (1: the probe's, 2: the decoder's) does KIND instead of opening it:

* ``segv``: a native crash, a read of address 0 through ctypes (the process dies with SIGSEGV, as a decoder bug
  does on a malformed file);
* ``hang``: a native hang, libc's ``pause()``, which never returns.

Without ``$MIMAMO_FAULTS`` nothing is changed.
"""
import os


def _parse(text: str) -> dict:
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, action = item.rsplit("=", 1)
        kind, count = action.split("@")
        faults[name] = (kind, int(count))
    return faults


def _install(faults: dict) -> None:
    import collections  # pylint: disable=import-outside-toplevel
    import ctypes  # pylint: disable=import-outside-toplevel

    import av  # pylint: disable=import-outside-toplevel

    opened = collections.Counter()
    real_open = av.open

    def faulty_open(file, *args, **kwargs):
        name = os.path.basename(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else None
        if name in faults:
            opened[name] += 1
            kind, count = faults[name]
            if opened[name] == count and kind == "segv":
                ctypes.string_at(0)
            if opened[name] == count and kind == "hang":
                ctypes.CDLL(None).pause()
        return real_open(file, *args, **kwargs)

    av.open = faulty_open


if os.environ.get("MIMAMO_FAULTS"):
    _install(_parse(os.environ["MIMAMO_FAULTS"]))

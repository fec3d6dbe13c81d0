"""Running a command to which file permissions apply, even when the tests run as root.

Root reads any file whatever its mode, through the capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so
a ``chmod 000`` file is readable to root. ``python -m tests.unprivileged CMD...`` drops both capabilities
from its bounding set (``prctl(PR_CAPBSET_DROP)``) and then executes CMD: a root process started from it
has neither, and the permission bits hold for it as for any user (it stays uid 0, so files root owns with
owner permissions remain usable). As another user it simply executes CMD.
"""
import ctypes
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

PR_CAPBSET_DROP = 24  # <linux/prctl.h>
CAP_DAC_OVERRIDE = 1  # <linux/capability.h>
CAP_DAC_READ_SEARCH = 2
REPO_ROOT = Path(__file__).resolve().parent.parent


def drop_permission_override() -> None:
    """Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set (a no-op unless root).

    Raises:
        OSError: the kernel refused (the process lacks CAP_SETPCAP).
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_CAPBSET_DROP, {capability}): {os.strerror(error)}")


def run_without_permission_override(command: List[str], env: Dict[str, str], cwd: Path, timeout_s: float
                                    ) -> subprocess.CompletedProcess:
    """Runs ``command`` (an argument list) with file permissions enforced, capturing its output as text.

    The child writes UTF-8 (``PYTHONUTF8=1``) and the output is decoded as UTF-8, whatever locale this process
    has: in one CI run this process's preferred encoding had become ASCII by then, and the progress bars'
    block characters failed to decode."""
    launcher = [sys.executable, "-m", "tests.unprivileged"]
    env = dict(env, PYTHONUTF8="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    return subprocess.run(launcher + command, env=env, cwd=str(cwd), capture_output=True, encoding="utf-8",
                          timeout=timeout_s, check=False)


if __name__ == "__main__":
    drop_permission_override()
    os.execvp(sys.argv[1], sys.argv[1:])

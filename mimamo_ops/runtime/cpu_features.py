"""What the CPU offers for bfloat16 arithmetic, read at run time (CPUs differ from machine to machine)."""
import functools
from pathlib import Path
from typing import Tuple

__all__ = ["bf16_units"]

# /proc/cpuinfo flag -> name used in help texts and logs
_BF16_FLAGS = {"amx_bf16": "AMX (amx_bf16)", "avx512_bf16": "AVX512_BF16"}


@functools.lru_cache(maxsize=None)
def bf16_units(cpuinfo: Path = Path("/proc/cpuinfo")) -> Tuple[str, ...]:
    """Names of the CPU's native bfloat16 units (AMX, AVX512_BF16) from the ``flags`` line of ``cpuinfo``.

    Returns an empty tuple where there are none or the file cannot be read (not Linux); bf16 there is emulated
    and slower than fp32.
    """
    try:
        with open(cpuinfo) as stream:
            flags = next((line.split(":", 1)[1].split() for line in stream if line.startswith("flags")), [])
    except OSError:
        return ()
    return tuple(name for flag, name in _BF16_FLAGS.items() if flag in flags)

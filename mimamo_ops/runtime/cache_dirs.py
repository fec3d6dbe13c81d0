"""Where this project keeps files on the machine: the user cache of weights and converted networks.

``default_cache_dir`` is ``$MIMAMO_CACHE_DIR`` if set, else the platform user cache (``~/.cache/mimamo`` on
Linux). The weights cache (``mimamo_ops.weights.cache``) and the converted-network cache
(``mimamo_ops.runtime.openvino_models``, ``<cache>/compiled``) both start from it.
"""
import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "default_cache_dir"]

CACHE_DIR_ENV = "MIMAMO_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$MIMAMO_CACHE_DIR`` if set, else the platform user cache (e.g. ``~/.cache/mimamo`` on Linux)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    import pooch  # pylint: disable=import-outside-toplevel  # 0.13 s; only the platform's cache folder is wanted

    return Path(pooch.os_cache("mimamo"))

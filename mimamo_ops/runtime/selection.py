"""Which runtime runs the ResNet-50 backbone (``BackboneRunner(runtime=...)``, ``--runtime``).

Kept free of torch and OpenVINO imports so that command-line parsers can list the choices cheaply.

* ``torch``: eager PyTorch, always available, on any device.
* ``openvino``: the network converted to OpenVINO IR (``mimamo_ops.runtime.openvino_models``), CPU only; the same
  features within the parity tolerance, faster on the CPU (``bench/bench_runtimes.py``).
* ``auto``: OpenVINO on the CPU when the package is installed, torch otherwise (and always on GPUs).
"""
import importlib.util

__all__ = ["RUNTIMES", "resolve_runtime"]

RUNTIMES = ("auto", "torch", "openvino")


def _openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device) -> str:
    """The runtime that ``runtime`` means on ``device``.

    Args:
        runtime: one of ``RUNTIMES``.
        device: a torch device or device string (``cpu``, ``cuda:0``).

    Returns:
        "torch" or "openvino".

    Raises:
        ValueError: an unknown runtime, or OpenVINO asked for on a non-CPU device or without the package.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
    on_cpu = str(device).split(":", 1)[0] == "cpu"
    if runtime == "auto":
        return "openvino" if on_cpu and _openvino_available() else "torch"
    if runtime == "openvino":
        if not on_cpu:
            raise ValueError(f"runtime 'openvino' runs on the CPU only; got device {device}")
        if not _openvino_available():
            raise ValueError("runtime 'openvino' needs the openvino package (pip install openvino)")
    return runtime

"""ResNet-50 FER+ backbone runtimes side by side: img/s and largest feature deviation from the torch fp32 path.

Every runtime runs on the same ``--images`` faces (64) (seeded weights, seed 4004; timings do not depend on the values), at the
same batch size and thread count, in one process with the project's allocator setting. Rounds are interleaved
(each round times every runtime once, in turn), so load from other processes hits all of them alike; the median
over rounds is printed, with the spread. Runtimes:

* ``torch``: eager PyTorch, channels_last (the project's ``--runtime torch``), the reference for the deviation.
* ``openvino``: ``BackboneRunner(runtime="openvino")``, f32 inference precision (the CPU default, ``auto``).
* ``onnxruntime``: the network exported with ``torch.onnx.export`` and run by ONNX Runtime (needs the
  ``onnxruntime`` and ``onnx`` packages; evaluated here, not offered by the project).
* ``torch.compile``: inductor, with ``--compile`` (slow to compile).

Runtimes whose packages are missing, or that fail to build, are reported with the reason and left out. From the
repository root:

    .venv/bin/python bench/bench_runtimes.py [--rounds 5] [--images 64] [--threads 2] [--batch-size 16] [--compile]
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from bench.bench_backbone import make_faces  # noqa: E402
from mimamo_ops.model.backbone import ResNet50FerPlus, preprocess_faces  # noqa: E402
from mimamo_ops.model.backbone_runner import BackboneRunner  # noqa: E402
from mimamo_ops.runtime.cpu_features import bf16_units  # noqa: E402
from tests.parity_recipes import gen_state_dict  # noqa: E402

Forward = Callable[[np.ndarray], np.ndarray]  # float32 (n, 3, 224, 224) -> float32 (n, 2048)


def _batched(forward: Forward, batch_size: int) -> Forward:
    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([forward(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    return run


def build_onnxruntime(state_dict, threads: int, batch_size: int, work: pathlib.Path) -> Forward:
    import onnxruntime as ort

    model = ResNet50FerPlus().eval()
    model.load_state_dict(state_dict)
    path = work / "backbone.onnx"
    example = torch.zeros(batch_size, 3, 224, 224)
    torch.onnx.export(model, (example,), str(path), input_names=["x"], output_names=["features"],
                      dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return _batched(lambda x: session.run(None, {"x": x})[0], batch_size)


def build_torch_compile(state_dict, batch_size: int) -> Forward:
    model = ResNet50FerPlus().eval()
    model.load_state_dict(state_dict)
    model = model.to(memory_format=torch.channels_last)
    compiled = torch.compile(model)

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    return _batched(forward, batch_size)


def build_runtimes(args, state_dict, work: pathlib.Path) -> Dict[str, Forward]:
    runtimes: Dict[str, Forward] = {}
    builders = {
        "torch": lambda: BackboneRunner(state_dict, batch_size=args.batch_size, runtime="torch").features_from_input,
        # the converted model comes from the project's cache, as in a run (converted there on first use)
        "openvino": lambda: BackboneRunner(state_dict, batch_size=args.batch_size,
                                           runtime="openvino").features_from_input,
        "onnxruntime": lambda: build_onnxruntime(state_dict, args.threads, args.batch_size, work),
    }
    if args.compile:
        builders["torch.compile"] = lambda: build_torch_compile(state_dict, args.batch_size)
    for name, build in builders.items():
        started = time.perf_counter()
        try:
            runtimes[name] = build()
        except Exception as error:  # pylint: disable=broad-except  # a missing or broken runtime is reported
            print(f"{name}: not measured ({type(error).__name__}: {str(error).splitlines()[0][:160]})")
            continue
        print(f"{name}: built in {time.perf_counter() - started:.1f} s")
    return runtimes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds after one warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=64, help="faces per timed pass")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (inductor)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with torch.device("meta"):
        template = ResNet50FerPlus().state_dict()
    state_dict = gen_state_dict(template, 4004)
    x = preprocess_faces(make_faces(args.images))
    units = ", ".join(bf16_units()) or "none"
    print(f"{args.images} faces, batch {args.batch_size}, {args.threads} threads; CPU bf16 units: {units}")
    with tempfile.TemporaryDirectory(prefix="mimamo-runtimes-") as tmp:
        runtimes = build_runtimes(args, state_dict, pathlib.Path(tmp))
        features = {name: forward(x) for name, forward in runtimes.items()}  # warm-up, and the outputs
        seconds = {name: [] for name in runtimes}
        for _ in range(args.rounds):
            for name, forward in runtimes.items():
                started = time.perf_counter()
                forward(x)
                seconds[name].append(time.perf_counter() - started)
    reference = features["torch"]
    torch_rate = args.images / statistics.median(seconds["torch"])
    print(f"max |feature| (torch): {np.abs(reference).max():.0f}; parity tolerance atol 2e-3")
    print(f"{'runtime':14s} {'img/s':>7s} {'(min-max)':>15s} {'x torch':>8s} {'max |dev|':>10s}")
    for name in runtimes:
        rates = [args.images / s for s in seconds[name]]
        rate = args.images / statistics.median(seconds[name])
        deviation = float(np.abs(features[name] - reference).max())
        print(f"{name:14s} {rate:7.1f} {min(rates):7.1f}-{max(rates):<7.1f} {rate / torch_rate:8.2f} "
              f"{deviation:10.2e}")


if __name__ == "__main__":
    main()

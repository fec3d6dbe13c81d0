"""Model-side timing per 64-face snippet on this machine: backbone, pyramid + phase, two-stream net.

Run: ``.venv/bin/python bench/bench_model.py [--threads 2] [--snippets 4]``. Weights are seeded
(parity recipe, seeds 4004 and 3003); timings do not depend on the weight values. Prints the median of
``--repeats`` runs after one warm-up for the default runtime (``auto``) and for ``--runtime torch``, the
streaming predictor's frames/s, and bf16 against fp32. Every ratio printed is between figures measured in
this run. The original code's per-stage times are printed as a recorded reference only, with the machine they
were measured on: a ratio against them would compare different machines and loads. To compare with the
original, run it beside this script on the same machine.
"""
import argparse
import pathlib
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.timing import time_runs  # noqa: E402
from mimamo_ops.model import snippets as snip  # noqa: E402
from mimamo_ops.model.backbone import ResNet50FerPlus  # noqa: E402
from mimamo_ops.model.backbone_runner import BackboneRunner  # noqa: E402
from mimamo_ops.model.predictor import MimamoModel, ModelConfig  # noqa: E402
from mimamo_ops.model.two_stream import TwoStreamRNN  # noqa: E402
from mimamo_ops.runtime.cpu_features import bf16_units  # noqa: E402
from tests.ops.test_predictor import moving_faces  # noqa: E402
from tests.parity_recipes import gen_state_dict  # noqa: E402

# The original code's per-snippet medians, as recorded (never divided by today's figures): stage -> seconds.
RECORDED_ORIGINAL = (
    ("parity README section 5: 2-core AMD EPYC, torch 2.13.0+cpu, 2 threads",
     {"backbone": 17.1 + 0.18, "phase": 1.87 + 0.12, "network": 0.73}),
    ("issue 12: 2 vCPUs with AVX-512, AVX512_BF16 and AMX, other load present",
     {"backbone": 8.95, "phase": 0.88, "network": 0.13}),
)


def write_weights(directory: pathlib.Path):
    network = TwoStreamRNN()
    torch.save({"state_dict": gen_state_dict(network.state_dict(), 3003), "epoch": 1}, directory / "mimamo.pth.tar")
    torch.save(gen_state_dict(ResNet50FerPlus().state_dict(), 4004), directory / "resnet.pth")
    return str(directory / "mimamo.pth.tar"), str(directory / "resnet.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--snippets", type=int, default=4, help="snippets in the end-to-end track")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, backbone = write_weights(pathlib.Path(tmp))
        model = MimamoModel.load(ModelConfig(checkpoint, backbone))
        faces = moving_faces(64 + 12)
        window_faces = faces[:64]
        windows = snip.window_positions(np.arange(6, 70), 76)
        rgb, coefficients = model.encode_faces(list(window_faces))

        def phase_stage():
            grey = torch.from_numpy(snip.prepare_phase_images(list(faces)))
            coeffs = model.phase.frame_coefficients(grey)
            with torch.inference_mode():
                model.phase.window_differences(coeffs, torch.from_numpy(windows))

        _, full_coefficients = model.encode_faces(list(faces))
        with torch.inference_mode():
            phase_0, phase_1 = model.phase.window_differences(full_coefficients, torch.from_numpy(windows))

        def network_stage():
            with torch.inference_mode():
                model.predict_sequence(model.network.frame_features(rgb, phase_0, phase_1)[None])

        runners = {"auto (" + model.backbone.runtime + ")": model.backbone,
                   "torch": BackboneRunner.from_file(backbone, runtime="torch")}
        backbone_s = {name: time_runs(lambda r=r: r.features(window_faces), args.repeats).median_s
                      for name, r in runners.items()}
        stages = {
            "backbone": backbone_s[next(iter(runners))],
            "phase": time_runs(phase_stage, args.repeats).median_s,
            "network": time_runs(network_stage, args.repeats).median_s,
        }
        total = sum(stages.values())
        print(f"threads={torch.get_num_threads()} per 64-face snippet (median of {args.repeats}), this run:")
        for name, seconds in stages.items():
            print(f"  {name:9s} {seconds:7.3f} s")
        print(f"  {'total':9s} {total:7.3f} s   -> {64 / total:.1f} frames/s (stage sum)")
        torch_s = backbone_s["torch"]
        for name, seconds in backbone_s.items():
            print(f"  backbone {name}: {seconds:.3f} s per snippet ({torch_s / seconds:.2f}x the torch runtime)")
        for machine, recorded in RECORDED_ORIGINAL:
            figures = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in recorded.items())
            print(f"  recorded original (another run, {machine}): {figures}; total {sum(recorded.values()):.2f} s")

        track_faces = moving_faces(64 * args.snippets)

        def whole_track():
            track = model.new_track()
            for i, face in enumerate(track_faces):
                track.add_face(i, i / 30.0, face)
            track.finish()

        seconds = time_runs(whole_track, 1).median_s
        print(f"streaming TrackPredictor, {len(track_faces)} faces: {seconds:.2f} s, "
              f"{len(track_faces) / seconds:.1f} frames/s")

        fp32_features = runners["torch"].features(window_faces)
        for name in dict.fromkeys(("torch", model.backbone.runtime)):
            bf16 = BackboneRunner.from_file(backbone, precision="bf16", runtime=name)
            fp32_s = backbone_s["torch"] if name == "torch" else stages["backbone"]
            bf16_seconds = time_runs(lambda: bf16.features(window_faces), args.repeats).median_s
            deviation = np.abs(bf16.features(window_faces) - fp32_features).max()
            print(f"bf16 backbone ({name}): {bf16_seconds:.3f} s per snippet ({fp32_s / bf16_seconds:.2f}x its fp32), "
                  f"max |bf16 - fp32| = {deviation:.3g} ({deviation / np.abs(fp32_features).max():.2%} of max "
                  f"feature); CPU bf16 units: {', '.join(bf16_units()) or 'none'}")


if __name__ == "__main__":
    main()

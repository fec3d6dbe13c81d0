"""Model-side timing per 64-face snippet on this machine: backbone, pyramid + phase, two-stream net.

Run: ``.venv/bin/python bench/bench_model.py [--threads 2] [--snippets 4]``. Weights are seeded
(parity recipe, seeds 4004 and 3003); timings do not depend on the weight values. Prints the median of
``--repeats`` runs after one warm-up, the speed-up over the original code's measured per-snippet times
(parity README section 5: 17.1 s backbone, 1.87 s phase, 0.73 s network with 2 threads), and the bf16
deviation.
"""
import argparse
import pathlib
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.timing import time_runs  # noqa: E402
from mimamo_ops import snippets as snip  # noqa: E402
from mimamo_ops.backbone import BackboneRunner, ResNet50FerPlus  # noqa: E402
from mimamo_ops.predictor import MimamoModel, ModelConfig  # noqa: E402
from mimamo_ops.two_stream import TwoStreamRNN  # noqa: E402
from tests.parity_recipes import gen_state_dict  # noqa: E402
from tests.ops.test_predictor import moving_faces  # noqa: E402

ORIGINAL_S = {"backbone": 17.1 + 0.18, "phase": 1.87 + 0.12, "network": 0.73}  # incl. preprocessing / grey resize


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

        stages = {
            "backbone": time_runs(lambda: model.backbone.features(window_faces), args.repeats).median_s,
            "phase": time_runs(phase_stage, args.repeats).median_s,
            "network": time_runs(network_stage, args.repeats).median_s,
        }
        total = sum(stages.values())
        original_total = sum(ORIGINAL_S.values())
        print(f"threads={torch.get_num_threads()} per 64-face snippet (median of {args.repeats}):")
        for name, seconds in stages.items():
            print(f"  {name:9s} {seconds:7.3f} s   original {ORIGINAL_S[name]:6.2f} s   speed-up {ORIGINAL_S[name] / seconds:6.1f}x")
        print(f"  {'total':9s} {total:7.3f} s   original {original_total:6.2f} s   speed-up {original_total / total:6.1f}x")
        print(f"  stage sum frames/s: {64 / total:.1f}")

        track_faces = moving_faces(64 * args.snippets)

        def whole_track():
            track = model.new_track()
            for i, face in enumerate(track_faces):
                track.add_face(i, i / 30.0, face)
            track.finish()

        seconds = time_runs(whole_track, 1).median_s
        print(f"streaming TrackPredictor, {len(track_faces)} faces: {seconds:.2f} s, {len(track_faces) / seconds:.1f} frames/s, "
              f"speed-up over the original {original_total * args.snippets / seconds:.1f}x")

        bf16 = BackboneRunner.from_file(backbone, precision="bf16")
        fp32_features = model.backbone.features(window_faces)
        bf16_seconds = time_runs(lambda: bf16.features(window_faces), args.repeats).median_s
        deviation = np.abs(bf16.features(window_faces) - fp32_features).max()
        print(f"bf16 backbone: {bf16_seconds:.3f} s per snippet ({stages['backbone'] / bf16_seconds:.2f}x fp32), "
              f"max |bf16 - fp32| = {deviation:.3g} ({deviation / np.abs(fp32_features).max():.2%} of max feature)")


if __name__ == "__main__":
    main()

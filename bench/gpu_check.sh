#!/usr/bin/env bash
# GPU check for a CUDA machine (issue 12, item 6), run from the repository root:
#
#     bash bench/gpu_check.sh [OUT_DIR]
#
# 1. installs what it needs into .venv-gpu (the CUDA torch build of the pinned version, then this project);
# 2. CUDA against the CPU on the parity inputs: the backbone on parity case 4 and the whole model on a
#    predict-aligned track, max |CUDA - CPU| printed next to the tolerances;
# 3. backbone timing at fp32, TF32 and bf16 over batch 64..512 (faces/s; target >= 3000 faces/s fp32 on an
#    H100/H200-class GPU);
# 3b. the model side whole (backbone, pyramid, two-stream net, GRU) with 1..16 videos in flight on one shared
#    backbone (BatchingBackbone, what --backbone_sharing machine gives every process), at fp32, TF32 and bf16;
# 4. `mimamo run` over many copies of a clip with one worker process per few CPU cores for the face stage
#    (frames/s end to end; target >= 1000 frames/s), with one backbone for the machine and one per process.
# Everything is written to OUT_DIR (default $OUT or ./gpu-check) and echoed. Not run in the session that wrote
# it (no GPU there): expect to fix what it shows.
set -euo pipefail

OUT_DIR="${1:-${OUT:-gpu-check}}"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.log") 2>&1

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
VENV=.venv-gpu
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "torch==$TORCH_VERSION"  # the default PyPI wheel is the CUDA build on Linux
    "$VENV/bin/pip" install -q -e ".[test]"
fi
PY="$VENV/bin/python"
export PYTHONPATH="$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
echo "CPU cores: $(nproc)"

echo "== 2. CUDA vs CPU on the parity inputs"
"$PY" - <<'EOF'
import numpy as np
import torch

from mimamo_ops.model.backbone import ResNet50FerPlus
from mimamo_ops.model.backbone_runner import BackboneRunner
from tests.ops.expected import load_expected
from tests.parity_recipes import gen_state_dict

case4 = load_expected("case4_resnet_expected.npz")
with torch.device("meta"):
    template = ResNet50FerPlus().state_dict()
weights = gen_state_dict(template, 4004)
for precision, tf32 in (("fp32", False), ("fp32", True), ("bf16", False)):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    gpu = BackboneRunner(weights, device="cuda", runtime="torch", precision=precision).features(case4["crops_u8"])
    dev = np.abs(gpu - case4["features"]).max()
    print(f"backbone case 4, {precision}{' TF32' if tf32 else ''}: max |CUDA - reference| {dev:.2e} "
          f"(fp32 tolerance 2e-3; max |feature| {np.abs(case4['features']).max():.0f})")
torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
EOF
"$PY" -m pytest -q -p no:cacheprovider tests/ops/test_backbone.py tests/ops/test_predict_aligned.py
"$PY" - <<'EOF'
import tempfile
from pathlib import Path

import numpy as np
import torch

from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, stitch_snippets
from tests.conftest import seeded_state_dict
from tests.ops.test_predictor import moving_faces

with tempfile.TemporaryDirectory() as tmp:
    checkpoint, backbone = Path(tmp, "m.pth.tar"), Path(tmp, "b.pth")
    torch.save({"state_dict": seeded_state_dict(MIMAMO, 3003), "epoch": 1}, checkpoint)
    torch.save(seeded_state_dict(BACKBONE, 4004), backbone)
    faces = moving_faces(200)
    values = {}
    for device in ("cpu", "cuda"):
        model = MimamoModel.load(ModelConfig(str(checkpoint), str(backbone), device=device, runtime="torch"))
        track = model.new_track()
        snippets = [p for i, f in enumerate(faces) for p in track.add_face(i, i / 30, f)] + track.finish()
        values[device] = stitch_snippets(snippets)[2]
    print(f"end to end, 200 faces: max |CUDA - CPU| valence/arousal {np.abs(values['cuda'] - values['cpu']).max():.2e}"
          " (predict-aligned tolerance 1e-5 between CPU runs)")
EOF

echo "== 3. backbone faces/s on the GPU"
"$PY" - <<'EOF'
import time

import numpy as np
import torch

from mimamo_ops.model.backbone import ResNet50FerPlus
from mimamo_ops.model.backbone_runner import BackboneRunner
from tests.parity_recipes import gen_state_dict

with torch.device("meta"):
    template = ResNet50FerPlus().state_dict()
weights = gen_state_dict(template, 4004)
x = np.random.default_rng(0).normal(0, 50, (2048, 3, 224, 224)).astype(np.float32)
for precision, tf32 in (("fp32", False), ("fp32", True), ("bf16", False)):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    for batch in (64, 128, 256, 512):
        runner = BackboneRunner(weights, device="cuda", batch_size=batch, precision=precision, runtime="torch")
        runner.features_from_input(x[:batch * 2])
        torch.cuda.synchronize()
        started = time.perf_counter()
        runner.features_from_input(x)
        torch.cuda.synchronize()
        rate = len(x) / (time.perf_counter() - started)
        print(f"{precision}{' TF32' if tf32 else '     '} batch {batch:3d}: {rate:7.0f} faces/s (host copies included)")
EOF

echo "== 3b. model side faces/s with 1..16 videos in flight on one shared backbone (BatchingBackbone)"
"$PY" - <<'EOF'
import tempfile
import threading
import time
from pathlib import Path

import torch

from mimamo_ops.model.backbone_batching import BatchingBackbone
from mimamo_ops.model.backbone_runner import BackboneRunner, choose_batch_size
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, predict_face_sequence
from tests.conftest import seeded_state_dict
from tests.ops.test_predictor import moving_faces

FACES_PER_VIDEO = 1024
faces = moving_faces(FACES_PER_VIDEO)


def run_video(model):
    for _ in predict_face_sequence(model, ((i, i / 30, face) for i, face in enumerate(faces))):
        pass


with tempfile.TemporaryDirectory() as tmp:
    checkpoint, backbone = Path(tmp, "m.pth.tar"), Path(tmp, "b.pth")
    torch.save({"state_dict": seeded_state_dict(MIMAMO, 3003), "epoch": 1}, checkpoint)
    torch.save(seeded_state_dict(BACKBONE, 4004), backbone)
    batch = choose_batch_size("cuda", processes=1)
    for precision, tf32 in (("fp32", False), ("fp32", True), ("bf16", False)):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cudnn.benchmark = True
        runner = BackboneRunner.from_file(backbone, device="cuda", batch_size=batch, precision=precision,
                                          runtime="torch")
        for videos in (1, 2, 4, 8, 16):
            shared = BatchingBackbone(runner)
            config = ModelConfig(str(checkpoint), str(backbone), device="cuda", precision=precision,
                                 worker_processes=videos)  # each video's requests: batch / videos faces
            model = MimamoModel.load(config, backbone=shared)
            threads = [threading.Thread(target=run_video, args=(model,)) for _ in range(videos)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            stats = shared.stats()
            shared.close()
            print(f"{precision}{' TF32' if tf32 else '     '} {videos:2d} video(s) in flight, batch {batch}: "
                  f"{videos * FACES_PER_VIDEO / seconds:7.0f} faces/s through the whole model side "
                  f"({stats['batches']} passes, {stats['shared_batches']} shared; target >= 3000 fp32)")
EOF

echo "== 4. mimamo run over many copies, worker processes for the face stage"
WORK="$(mktemp -d)"
"$PY" - "$WORK" <<'EOF'
import os
import sys
from pathlib import Path

import torch

from beam_pipeline.cli.demo import write_sample_clip
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from tests.conftest import seeded_state_dict

work = Path(sys.argv[1])
torch.save({"state_dict": seeded_state_dict(MIMAMO, 3003), "epoch": 1}, work / "model_weights.pth.tar")
torch.save(seeded_state_dict(BACKBONE, 4004), work / "resnet50_ferplus_dag.pth")
clip = write_sample_clip(work / "clip.mp4", seconds=30)
copies = work / "copies"
copies.mkdir()
for i in range(int(os.environ.get("COPIES", "32"))):
    os.link(clip, copies / f"copy{i:03d}.mp4")
EOF
WORKERS="${WORKERS:-$(( $(nproc) / 2 ))}"
for SHARING in machine process; do
    STARTED=$(date +%s.%N)
    "$VENV/bin/mimamo" run "$WORK/copies" --output "$WORK/out-$SHARING" --checkpoint "$WORK/model_weights.pth.tar" \
        --backbone "$WORK/resnet50_ferplus_dag.pth" --device cuda --n_workers "$WORKERS" --no_progress \
        --backbone_sharing "$SHARING"
    ENDED=$(date +%s.%N)
    "$PY" - "$WORK/out-$SHARING" "$STARTED" "$ENDED" "$WORKERS" "$SHARING" <<'EOF'
import sys

import pyarrow.parquet as pq

table = pq.read_table(f"{sys.argv[1]}/videos")
frames = sum(table.column("frame_count").to_pylist())
seconds = float(sys.argv[3]) - float(sys.argv[2])
print(f"{table.num_rows} videos, {frames} frames in {seconds:.1f} s with {sys.argv[4]} worker processes, backbone "
      f"per {sys.argv[5]}: {frames / seconds:.0f} frames/s end to end (target >= 1000)")
EOF
done
rm -rf "$WORK"

"""A worker process's side of the machine's one backbone, run by ``tests/pipeline/test_backbone_sharing.py``.

``python -m tests.pipeline.backbone_client CHECKPOINT BACKBONE TAG FACES OUT``: connects to the backbone named TAG
(``MachineBackbone``, loading it when it is the first), prints ``connected``, then for each line NAME read from
stdin computes the features of the faces in FACES (a ``.npy``), saves them as OUT/NAME.npy and prints the shared
backbone's stats as JSON.
"""
import json
import sys
from pathlib import Path

import numpy as np

from beam_pipeline.model_loading import MachineBackbone
from mimamo_ops.model.predictor import ModelConfig


def main(checkpoint: str, backbone: str, tag: str, faces_path: str, out: str) -> None:
    handle = MachineBackbone(ModelConfig(checkpoint, backbone, backbone_batch_size=8), tag)
    print("connected", flush=True)
    faces = np.load(faces_path)
    for line in sys.stdin:
        name = line.strip()
        np.save(Path(out) / f"{name}.npy", handle.features(faces))
        print(json.dumps(handle.stats()), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:6])

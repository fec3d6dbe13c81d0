"""``mimamo predict-aligned`` on OpenFace-layout folders, with the real ResNet-50 and seeded weights."""
import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from beam_pipeline.cli.main import main
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, stitch_snippets
from tests.ops.test_predictor import moving_faces

NUM_FACES = 70  # two snippets: [0, 64) and the end-aligned [6, 70)


@pytest.fixture(scope="module")
def openface_folder(tmp_path_factory):
    """An OpenFace output folder: video_aligned/frame_det_00_<frame:06d>.bmp, 1-based, frame 5 missing."""
    root = tmp_path_factory.mktemp("openface")
    aligned = root / "video_aligned"
    aligned.mkdir()
    numbers = [n for n in range(1, NUM_FACES + 2) if n != 5]
    faces = moving_faces(NUM_FACES)
    for number, face in zip(numbers, faces):
        Image.fromarray(face).save(aligned / f"frame_det_00_{number:06d}.bmp")
    (root / "video.csv").write_text("frame, face_id\n")
    return root, numbers, faces


@pytest.fixture(scope="module")
def expected_rows(openface_folder, synthetic_weights):
    _, numbers, faces = openface_folder
    model = MimamoModel.load(ModelConfig(*map(str, synthetic_weights)))
    track = model.new_track()
    snippets = [p for n, f in zip(numbers, faces) for p in track.add_face(n, 0.0, f)] + track.finish()
    return stitch_snippets(snippets)


def test_csv_has_one_row_per_face_in_frame_order(openface_folder, synthetic_weights, expected_rows, tmp_path):
    root, numbers, _ = openface_folder
    output = tmp_path / "va.csv"
    checkpoint, backbone = synthetic_weights
    assert main(["predict-aligned", str(root), "--checkpoint", str(checkpoint), "--backbone", str(backbone),
                 "--output", str(output), "--batch-size", "16"]) == 0
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["frame", "valence", "arousal"]
    assert [int(r["frame"]) for r in rows] == numbers
    values = np.array([[float(r["valence"]), float(r["arousal"])] for r in rows])
    np.testing.assert_allclose(values, expected_rows[2], rtol=0, atol=1e-5)
    assert np.abs(values).max() > 0


def test_parquet_output_and_images_directly_in_the_folder(openface_folder, synthetic_weights, expected_rows, tmp_path):
    root, numbers, _ = openface_folder
    output = tmp_path / "va.parquet"
    checkpoint, backbone = synthetic_weights
    assert main(["predict-aligned", str(root / "video_aligned"), "--checkpoint", str(checkpoint),
                 "--backbone", str(backbone), "--output", str(output)]) == 0
    table = pq.read_table(output)
    assert table.column_names == ["frame", "valence", "arousal"]
    assert table.column("frame").to_pylist() == numbers
    np.testing.assert_allclose(np.stack([table.column("valence").to_numpy(), table.column("arousal").to_numpy()], 1),
                               expected_rows[2], rtol=0, atol=1e-5)


def test_backbone_given_as_checkpoint_is_a_one_line_error(openface_folder, synthetic_weights, tmp_path, capsys):
    root, _, _ = openface_folder
    _, backbone = synthetic_weights
    code = main(["predict-aligned", str(root), "--checkpoint", str(backbone), "--backbone", str(backbone),
                 "--output", str(tmp_path / "x.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert "resnet50_ferplus_dag.pth" in err and "backbone" in err and "Traceback" not in err


def test_empty_folder_names_the_folder(tmp_path, synthetic_weights, capsys):
    checkpoint, backbone = synthetic_weights
    code = main(["predict-aligned", str(tmp_path), "--checkpoint", str(checkpoint), "--backbone", str(backbone),
                 "--output", str(tmp_path / "x.csv")])
    assert code == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_every_runtime_gives_the_end_to_end_numbers_within_the_parity_tolerance(openface_folder, synthetic_weights,
                                                                                 tmp_path):
    # parity README section 4: per-frame output of the full chain, atol 1e-4
    root, numbers, _ = openface_folder
    checkpoint, backbone = synthetic_weights
    values = {}
    for runtime in ("torch", "openvino"):
        output = tmp_path / f"{runtime}.parquet"
        assert main(["predict-aligned", str(root), "--checkpoint", str(checkpoint), "--backbone", str(backbone),
                     "--output", str(output), "--runtime", runtime]) == 0
        table = pq.read_table(output)
        assert table.column("frame").to_pylist() == numbers
        values[runtime] = np.stack([table.column("valence").to_numpy(), table.column("arousal").to_numpy()], 1)
    assert np.abs(values["torch"]).max() > 0
    np.testing.assert_allclose(values["openvino"], values["torch"], rtol=0, atol=1e-4)

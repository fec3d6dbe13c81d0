"""The model side of work units: one face's positions computed in blocks, anywhere, then joined exactly.

A long video's faces are cut into blocks of consecutive frames so that several workers can run the costly part
(the backbone, about 95 % of the CPU time, and the pyramid) at once. What couples positions is small and is done
after the blocks are joined:

* A position's per-frame feature (:meth:`MimamoModel.frame_features`) needs the pyramid coefficients of its
  13-position window, clamped to the face's whole sequence (spec 6.4). A block computes every position with the
  window clamped to the block (:class:`BlockEncoder`); only the ``num_phase // 2`` positions at each end of a block
  can differ from the whole sequence's, so the block also keeps the inputs (backbone feature and grey phase
  image) of its first and last ``num_phase`` positions, and :func:`join_face_features` computes those end
  positions again with their true windows.
* The GRU runs over groups of ``gru_sequence_snippets`` snippets of the whole sequence
  (:func:`predict_snippets`), after the join.

So the joined features, and the predictions, are those of the unsplit :class:`TrackPredictor` up to the
rounding of batches of a different size (measured in ``tests/ops/test_model_units.py``).
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np
import torch

from mimamo_ops.model import snippets as snip
from mimamo_ops.model.predictor import FEATURE_GROUP, MimamoModel, SnippetPrediction, snippet_predictions

__all__ = ["BlockEncoder", "BlockFeatures", "join_face_features", "predict_snippets"]


@dataclasses.dataclass(frozen=True)
class BlockFeatures:
    """One face's per-frame features over one block, with the inputs its end positions need again.

    Attributes:
        first_position: the face-sequence position of row 0.
        features: float32 (n, 256), windows clamped to the block (its end rows are provisional).
        margin_positions: int64 (m,), face-sequence positions whose inputs are kept: the first and last
            ``num_phase`` of the block (all of them in a block of at most ``2 * num_phase``).
        margin_rgb: float32 (m, 2048) backbone features of those positions.
        margin_grey: float32 (m, phase_size, phase_size) grey phase images of those positions.
    """

    first_position: int
    features: np.ndarray
    margin_positions: np.ndarray
    margin_rgb: np.ndarray
    margin_grey: np.ndarray

    @property
    def num_positions(self) -> int:
        return int(self.features.shape[0])


def _features_in_groups(model: MimamoModel, rgb: torch.Tensor, coefficients, windows: np.ndarray) -> torch.Tensor:
    """``model.frame_features`` over groups of ``FEATURE_GROUP`` rows (the group size the streaming predictor
    uses), float32 (P, 256)."""
    return torch.cat([model.frame_features(rgb[start:start + FEATURE_GROUP], coefficients,
                                           windows[start:start + FEATURE_GROUP])
                      for start in range(0, len(windows), FEATURE_GROUP)])


class BlockEncoder:
    """Backbone, pyramid and per-frame net for one face's consecutive positions within one block, fed one aligned
    face at a time so that memory stays flat in the block's length: faces are encoded in groups of
    ``FEATURE_GROUP`` as soon as the window of the group's last position is complete, then dropped.

    Args:
        model: the loaded networks.
        first_position: the face-sequence position of the block's first face.
        count: n >= 1, the block's faces (windows are clamped to them).
    """

    def __init__(self, model: MimamoModel, first_position: int, count: int):
        if count < 1:
            raise ValueError(f"a block holds at least one face, got {count}")
        self._model = model
        self._first_position = int(first_position)
        self._count = count
        self._half = model.config.num_phase // 2
        margin = model.config.num_phase
        self._margin = sorted(set(range(min(count, margin))) | set(range(max(0, count - margin), count)))
        self._margin_rows = set(self._margin)
        self._faces: Dict[int, np.ndarray] = {}  # block row -> aligned face, while a window still needs it
        self._added = 0
        self._done = 0  # rows whose features are computed
        self._features: List[torch.Tensor] = []
        self._margin_rgb: Dict[int, np.ndarray] = {}
        self._margin_grey: Dict[int, np.ndarray] = {}

    def add(self, face_rgb: np.ndarray) -> None:
        """Adds the block's next aligned face, uint8 (H, W, 3) RGB."""
        if self._added >= self._count:
            raise ValueError(f"the block holds {self._count} faces; got one more")
        self._faces[self._added] = face_rgb
        self._added += 1
        while self._done < self._count:
            stop = min(self._done + FEATURE_GROUP, self._count)
            if self._added < min(stop + self._half, self._count):
                break
            self._encode_group(self._done, stop)

    def finish(self) -> BlockFeatures:
        """The block's features and margins.

        Raises:
            ValueError: fewer faces were added than the block holds.
        """
        if self._done < self._count:
            raise ValueError(f"the block holds {self._count} faces; {self._added} were added")
        return BlockFeatures(
            first_position=self._first_position,
            features=torch.cat(self._features).float().cpu().numpy(),
            margin_positions=np.asarray(self._margin, dtype=np.int64) + self._first_position,
            margin_rgb=np.stack([self._margin_rgb[row] for row in self._margin]),
            margin_grey=np.stack([self._margin_grey[row] for row in self._margin]),
        )

    def _encode_group(self, start: int, stop: int) -> None:
        """Features of rows [start, stop): backbone on them, pyramid on their windows' faces."""
        rows = np.arange(start, stop, dtype=np.int64)
        windows = snip.window_positions(rows, self._count, self._model.config.num_phase)
        low, high = int(windows.min()), int(windows.max()) + 1
        rgb = self._model.backbone_features([self._faces[row] for row in range(start, stop)])
        grey = snip.prepare_phase_images([self._faces[row] for row in range(low, high)],
                                         self._model.config.phase_size)
        coefficients = self._model.phase_coefficients(grey)
        self._features.append(self._model.frame_features(rgb, coefficients, windows - low))
        for row in range(start, stop):
            if row in self._margin_rows:
                self._margin_rgb[row] = rgb[row - start].float().cpu().numpy()
                self._margin_grey[row] = grey[row - low]
        self._done = stop
        for row in [row for row in self._faces if row < stop - self._half]:
            del self._faces[row]


def join_face_features(model: MimamoModel, blocks: Sequence[BlockFeatures], num_faces: int) -> torch.Tensor:
    """One face's features over its whole sequence from its blocks; the positions within ``num_phase // 2`` of a
    block's ends are computed again with their windows clamped to the whole sequence (spec 6.4).

    Args:
        model: the loaded networks.
        blocks: the face's blocks, in any order; together they cover positions [0, num_faces) once.
        num_faces: N, the length of the face's sequence.

    Returns:
        float32 (N, 256) on the model's device.

    Raises:
        ValueError: the blocks leave a position out or cover one twice.
    """
    covered = np.zeros(num_faces, dtype=np.int64)
    features = np.zeros((num_faces, blocks[0].features.shape[1] if blocks else 0), dtype=np.float32)
    rgb_of, grey_of, ends = {}, {}, []
    half = model.config.num_phase // 2
    for block in blocks:
        start, stop = block.first_position, block.first_position + block.num_positions
        if start < 0 or stop > num_faces:
            raise ValueError(f"a block covers positions [{start}, {stop}) outside the face's [0, {num_faces})")
        covered[start:stop] += 1
        features[start:stop] = block.features
        for row, position in enumerate(block.margin_positions.tolist()):
            rgb_of[position], grey_of[position] = block.margin_rgb[row], block.margin_grey[row]
        ends.extend(range(start, min(start + half, stop)))
        ends.extend(range(max(stop - half, start), stop))
    if num_faces and not np.all(covered == 1):
        missing, twice = np.flatnonzero(covered == 0), np.flatnonzero(covered > 1)
        raise ValueError(f"the blocks cover {len(missing)} positions of {num_faces} not at all and {len(twice)} "
                         f"more than once")
    result = torch.from_numpy(features).to(model.device)
    if not ends:
        return result
    ends_array = np.unique(np.asarray(ends, dtype=np.int64))
    windows = snip.window_positions(ends_array, num_faces, model.config.num_phase)
    needed = np.unique(windows)
    grey = np.stack([grey_of[p] for p in needed.tolist()])
    rgb = torch.from_numpy(np.stack([rgb_of[p] for p in ends_array.tolist()])).to(model.device)
    coefficients = model.phase_coefficients(grey)
    again = _features_in_groups(model, rgb, coefficients, np.searchsorted(needed, windows))
    result[torch.from_numpy(ends_array).to(model.device)] = again.to(result.dtype)
    return result


def predict_snippets(model: MimamoModel, features: torch.Tensor, frame_indices: np.ndarray,
                     timestamps_s: np.ndarray) -> List[SnippetPrediction]:
    """GRU and classifier over one face's whole sequence (spec 6.2, 4.4): every snippet's prediction.

    Args:
        model: the loaded networks.
        features: float32 (N, 256), the face's per-frame features (``join_face_features``).
        frame_indices: int64 (N,), the video frame of each position.
        timestamps_s: float64 (N,), the presentation time of each position in seconds.

    Returns:
        The snippets in order, as :class:`TrackPredictor` gives them for the same faces.
    """
    config = model.config
    ranges = snip.snippet_ranges(int(features.shape[0]), config.snippet_length, config.snippet_stride)
    out: List[SnippetPrediction] = []
    for chunk in snip.chunk_snippets(len(ranges), config.gru_sequence_snippets):
        chunk_ranges = [ranges[i] for i in chunk]
        values = model.predict_sequence(torch.stack([features[s:e] for s, e in chunk_ranges]))
        out.extend(snippet_predictions(chunk.start, chunk_ranges, values, frame_indices, timestamps_s, 0))
    return out

"""Streaming MIMAMO-Net inference: aligned faces of one track in, per-snippet valence/arousal out.

How the work is shared out (spec 1, 4.4, 6, 8, 10.1):

* Each face goes through the backbone and the steerable pyramid **once**: its 2048-d feature and its
  pyramid phase/magnitude do not depend on any window or snippet.
* The per-frame part of the two-stream net (:meth:`TwoStreamRNN.frame_features`) depends only on the
  face's own feature and its 13-face temporal window, so it is computed once per position, also for
  positions that two snippets share.
* Only the GRU couples positions: consecutive snippets of a track are grouped into sequences of
  ``gru_sequence_snippets`` (the authors' reference run used 64) and each sequence goes through
  :meth:`TwoStreamRNN.sequence_head`. That option is the only one that changes the numbers.

Memory stays flat in the track length: faces, features and pyramid coefficients are kept only while a
window, a pending snippet or a pending GRU sequence still needs them.
"""
import dataclasses
import logging
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mimamo_ops.model import snippets as snip
from mimamo_ops.model.backbone_runner import BackboneRunner, choose_batch_size
from mimamo_ops.model.checkpoints import apply_state_dict, load_mimamo_checkpoint, sha256_file
from mimamo_ops.model.phase import FrameCoefficients, PhaseDifferenceExtractor
from mimamo_ops.model.two_stream import TwoStreamRNN
from mimamo_ops.runtime.selection import RUNTIMES
from mimamo_ops.runtime.threads import threads_per_worker, usable_cpus

LOGGER = logging.getLogger(__name__)
FEATURE_GROUP = 64  # positions per call of the per-frame network; aligned to multiples of it


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the model side. Defaults are those of the authors' reference run.

    Attributes:
        checkpoint_path: MIMAMO checkpoint (``model_weights.pth.tar``).
        backbone_path: ResNet-50 FER+ weights (``resnet50_ferplus_dag.pth``).
        device: torch device string, e.g. ``cpu`` or ``cuda:0``.
        backbone_batch_size: faces per backbone forward; a compute setting that never changes results.
            0 picks one for the device (``backbone.choose_batch_size``: 16 on CPU, sized to free GPU memory and
            shared among ``processes_per_machine()``).
        gru_sequence_snippets: consecutive snippets of one track per GRU sequence (spec 4.4). Changes results.
        snippet_length: L, faces per snippet (spec 6.2).
        snippet_stride: faces between snippet starts; below ``snippet_length`` snippets overlap.
        num_phase: phase differences per window (fixed to 12 by the checkpoint).
        phase_size: side of the grey phase images in pixels (fixed to 48 by the checkpoint).
        pyramid_height: steerable pyramid height (levels 1 and 2 are used; 4 in the original).
        nbands: pyramid orientations (fixed to 2 by the checkpoint).
        scale_factor: pyramid scale step (2; level sizes 48 and 24 are fixed by the checkpoint).
        precision: ``fp32`` (default, exact) or ``bf16`` (backbone autocast; faster, small deviations).
        runtime: backbone runtime (``backbone.RUNTIMES``): ``auto`` (OpenVINO on the CPU, torch on GPUs),
            ``torch`` or ``openvino``. Same numbers within the parity tolerances; speed only.
        threads_per_worker: threads of every library in each worker process; 0 divides the process's usable
            CPUs (``threads.usable_cpus``) among ``worker_processes``.
        worker_processes: pipeline processes sharing one machine (for ``threads_per_worker`` 0); 0 means one
            per CPU (Dataflow's default), i.e. 1 thread each.
    """

    checkpoint_path: str
    backbone_path: str
    device: str = "cpu"
    backbone_batch_size: int = 0
    gru_sequence_snippets: int = snip.GRU_SEQUENCE_SNIPPETS
    snippet_length: int = snip.SNIPPET_LENGTH
    snippet_stride: int = snip.SNIPPET_STRIDE
    num_phase: int = snip.NUM_PHASE
    phase_size: int = snip.PHASE_SIZE
    pyramid_height: int = 4
    nbands: int = 2
    scale_factor: float = 2.0
    precision: str = "fp32"
    runtime: str = "auto"
    threads_per_worker: int = 0
    worker_processes: int = 1

    def __post_init__(self):
        fixed = {"num_phase": (self.num_phase, 12), "phase_size": (self.phase_size, 48), "nbands": (self.nbands, 2)}
        fixed["scale_factor"] = (float(self.scale_factor), 2.0)
        for name, (value, required) in fixed.items():
            if value != required:
                raise ValueError(f"{name}={value} is not supported: the MIMAMO checkpoint fixes it to {required}")
        if self.pyramid_height < 4:
            raise ValueError(f"pyramid_height={self.pyramid_height}: levels 1 and 2 need a height of at least 4")
        if self.backbone_batch_size < 0:
            raise ValueError(f"backbone_batch_size must be >= 0 (0: automatic), got {self.backbone_batch_size}")
        for name in ("gru_sequence_snippets", "snippet_length", "snippet_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.threads_per_worker < 0 or self.worker_processes < 0:
            raise ValueError(f"threads_per_worker and worker_processes must be >= 0 (0: automatic), got "
                             f"{self.threads_per_worker} and {self.worker_processes}")

    def processes_per_machine(self) -> int:
        """Pipeline processes on this machine (``worker_processes``; 0: one per usable CPU), >= 1."""
        return self.worker_processes or usable_cpus()

    def thread_budget(self) -> int:
        """Threads per library for one worker process on this machine (``mimamo_ops.runtime.threads``), >= 1."""
        if self.threads_per_worker:
            return self.threads_per_worker
        if self.worker_processes == 0:
            return 1
        return threads_per_worker(self.worker_processes)


@dataclasses.dataclass(frozen=True)
class SnippetPrediction:
    """The network output for one snippet of one track.

    Attributes:
        snippet_index: order of the snippet within its track (later ones overwrite earlier ones).
        positions: int64 (L,), rows of the track's face list.
        frame_indices: int64 (L,), 0-based video frame index of each row.
        timestamps_s: float64 (L,), presentation time of each row in seconds.
        valence_arousal: float32 (L, 2), columns (valence, arousal).
    """

    snippet_index: int
    positions: np.ndarray
    frame_indices: np.ndarray
    timestamps_s: np.ndarray
    valence_arousal: np.ndarray


class MimamoModel:
    """The loaded networks (backbone, pyramid, two-stream net) on one device. Load once per process.

    Forward passes only read the modules, so one instance can serve several threads.
    """

    def __init__(
        self,
        config: ModelConfig,
        backbone: BackboneRunner,
        network: TwoStreamRNN,
        phase: PhaseDifferenceExtractor,
        checkpoint_sha256: str = "",
        backbone_sha256: str = "",
    ):
        self.config = config
        self.backbone = backbone
        self.network = network
        self.phase = phase
        self.checkpoint_sha256 = checkpoint_sha256
        self.backbone_sha256 = backbone_sha256

    @classmethod
    def load(cls, config: ModelConfig, backbone=None) -> "MimamoModel":
        """Loads both weight files strictly (``weights_only=True``) and moves the models to ``config.device``.

        Args:
            config: the model side's settings.
            backbone: a backbone that other processes share (``backbone_batching.BatchingBackbone`` or a proxy of
                one: ``features``, ``compute_batch_size`` and ``add_batch_listener``) to use instead of loading
                one here. Its compute batch is its own; a track sends it faces in requests of that batch divided
                among the machine's processes, so that their requests together fill a batch.
        """
        device = torch.device(config.device)
        state, epoch = load_mimamo_checkpoint(config.checkpoint_path)
        network = TwoStreamRNN(num_phase=config.num_phase)
        apply_state_dict(network, state, config.checkpoint_path, "MIMAMO checkpoint")
        if backbone is not None:
            config = dataclasses.replace(config, backbone_batch_size=max(
                1, backbone.compute_batch_size() // config.processes_per_machine()))
        elif not config.backbone_batch_size:
            config = dataclasses.replace(config, backbone_batch_size=choose_batch_size(
                device, processes=config.processes_per_machine()))
        backbone_sha256 = sha256_file(config.backbone_path)
        if backbone is None:
            backbone = BackboneRunner.from_file(
                config.backbone_path, device=device, batch_size=config.backbone_batch_size,
                precision=config.precision, runtime=config.runtime, weights_sha256=backbone_sha256,
            )
        LOGGER.info("loaded %s (epoch %s) and %s on %s", config.checkpoint_path, epoch, config.backbone_path, device)
        phase = PhaseDifferenceExtractor(
            phase_size=config.phase_size,
            height=config.pyramid_height,
            nbands=config.nbands,
            scale_factor=config.scale_factor,
        )
        return cls(
            config,
            backbone,
            network.to(device).eval(),
            phase.to(device).eval(),
            checkpoint_sha256=sha256_file(config.checkpoint_path),
            backbone_sha256=backbone_sha256,
        )

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def new_track(self) -> "TrackPredictor":
        """Starts the streaming state of one (video, face) track."""
        return TrackPredictor(self)

    def encode_faces(self, faces: Sequence[np.ndarray]):
        """Per-face work: backbone features and pyramid coefficients.

        Args:
            faces: F aligned faces, uint8 (H, W, 3) RGB.

        Returns:
            (float32 tensor (F, 2048) on the model's device, the phase extractor's per-frame coefficients).
        """
        return (self.backbone_features(faces),
                self.phase_coefficients(snip.prepare_phase_images(faces, self.config.phase_size)))

    def backbone_features(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """F aligned faces, uint8 (H, W, 3) RGB -> float32 (F, 2048) backbone features on the model's device."""
        with torch.inference_mode():
            return torch.from_numpy(self.backbone.features(np.stack(faces))).to(self.device)

    def phase_coefficients(self, grey: np.ndarray):
        """The pyramid's per-frame coefficients of float32 (F, S, S) grey phase images
        (``snippets.prepare_phase_images``)."""
        with torch.inference_mode():
            return self.phase.frame_coefficients(torch.from_numpy(grey).to(self.device))

    def frame_features(self, rgb: torch.Tensor, coefficients, windows: np.ndarray) -> torch.Tensor:
        """Per-position part of the two-stream net.

        Args:
            rgb: float32 (P, 2048), the features of the P positions.
            coefficients: per-frame pyramid coefficients of the frames that ``windows`` index.
            windows: int64 (P, 13), rows of ``coefficients`` forming each position's window.

        Returns:
            float32 (P, 256).
        """
        with torch.inference_mode():
            index = torch.from_numpy(windows).to(self.device)
            phase_0, phase_1 = self.phase.window_differences(coefficients, index)
            return self.network.frame_features(rgb, phase_0, phase_1)

    def predict_sequence(self, features: torch.Tensor) -> np.ndarray:
        """GRU + classifier for S consecutive snippets: float32 (S, L, 256) -> numpy float32 (S, L, 2)."""
        with torch.inference_mode():
            return self.network.sequence_head(features).float().cpu().numpy()


class _Blocks:
    """Per-position values kept as blocks of consecutive positions, dropped from the front when done."""

    def __init__(self):
        self._blocks: List[Tuple[int, object]] = []  # (first position, payload with positions on axis 0)

    def append(self, start: int, payload) -> None:
        self._blocks.append((start, payload))

    def drop_before(self, position: int) -> None:
        """Forgets blocks that end at or before ``position``."""
        self._blocks = [(s, p) for s, p in self._blocks if s + _length(p) > position]

    def span(self, start: int, stop: int):
        """The payload for positions [start, stop) and the position its row 0 stands for."""
        parts = [(s, p) for s, p in self._blocks if s < stop and s + _length(p) > start]
        first = parts[0][0]
        return _concat([p for _, p in parts]), first


def _length(payload) -> int:
    if isinstance(payload, FrameCoefficients):
        return payload.num_frames
    return int(payload.shape[0])


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], FrameCoefficients):
        return FrameCoefficients.concat(parts)
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return np.concatenate(parts)


class TrackPredictor:
    """Streaming predictor for one face track. Feed faces in frame order, then call :meth:`finish`.

    Snippets are emitted as soon as their GRU sequence is complete; the rest (including the
    end-aligned last snippet, spec 6.2) comes out of :meth:`finish`.
    """

    def __init__(self, model: MimamoModel):
        self._model = model
        self._config = model.config
        self._half = self._config.num_phase // 2
        self._pending: List[np.ndarray] = []
        self._pending_times: List[Tuple[int, float]] = []
        self._num_added = 0
        self._num_encoded = 0
        self._num_featured = 0
        self._next_snippet = 0
        self._frame_indices = _Blocks()
        self._timestamps = _Blocks()
        self._rgb = _Blocks()
        self._coefficients = _Blocks()
        self._features = _Blocks()

    def add_face(self, frame_index: int, timestamp_s: float, face_rgb: np.ndarray) -> List[SnippetPrediction]:
        """Adds the next face of the track.

        Args:
            frame_index: 0-based video frame index of the face.
            timestamp_s: presentation time of the frame in seconds.
            face_rgb: uint8 (112, 112, 3) aligned face, RGB.

        Returns:
            Snippets whose GRU sequence this face completed (usually none).
        """
        self._pending.append(face_rgb)
        self._pending_times.append((frame_index, timestamp_s))
        self._num_added += 1
        if len(self._pending) < self._config.backbone_batch_size:
            return []
        self._encode_pending()
        self._compute_features(num_faces=None)
        return self._emit_snippets(num_faces=None)

    def finish(self) -> List[SnippetPrediction]:
        """Ends the track and returns all remaining snippets."""
        self._encode_pending()
        self._compute_features(num_faces=self._num_added)
        return self._emit_snippets(num_faces=self._num_added)

    def _encode_pending(self) -> None:
        if not self._pending:
            return
        rgb, coefficients = self._model.encode_faces(self._pending)
        frame_indices, timestamps = zip(*self._pending_times)
        self._frame_indices.append(self._num_encoded, np.array(frame_indices, dtype=np.int64))
        self._timestamps.append(self._num_encoded, np.array(timestamps, dtype=np.float64))
        self._rgb.append(self._num_encoded, rgb)
        self._coefficients.append(self._num_encoded, coefficients)
        self._num_encoded += len(self._pending)
        self._pending = []
        self._pending_times = []

    def _compute_features(self, num_faces: Optional[int]) -> None:
        """Runs the per-frame net on every whole group of positions whose windows are complete.

        Groups are aligned to multiples of FEATURE_GROUP so that the batches the net sees do not depend
        on the backbone batch size. Before the track ends (``num_faces`` None), a position is ready once
        the face ``half`` positions after it is encoded, because its window cannot be clamped any more.
        """
        ready = self._num_encoded if num_faces is not None else self._num_encoded - self._half
        while self._num_featured < ready:
            start = self._num_featured
            stop = min((start // FEATURE_GROUP + 1) * FEATURE_GROUP, ready)
            if num_faces is None and stop % FEATURE_GROUP:
                break
            positions = np.arange(start, stop, dtype=np.int64)
            clamp_to = num_faces if num_faces is not None else self._num_encoded
            windows = snip.window_positions(positions, clamp_to, self._config.num_phase)
            coefficients, first = self._coefficients.span(int(windows.min()), int(windows.max()) + 1)
            rgb, rgb_first = self._rgb.span(start, stop)
            features = self._model.frame_features(rgb[start - rgb_first : stop - rgb_first], coefficients, windows - first)
            self._features.append(start, features)
            self._num_featured = stop
        keep_from = self._num_featured - self._half
        self._rgb.drop_before(keep_from)
        self._coefficients.drop_before(keep_from)

    def _emit_snippets(self, num_faces: Optional[int]) -> List[SnippetPrediction]:
        """Emits every GRU sequence whose snippets are all computable and final."""
        length, stride = self._config.snippet_length, self._config.snippet_stride
        group = self._config.gru_sequence_snippets
        if num_faces is None:
            # Only full snippets can be final before the end; an end-aligned one needs N.
            ranges = [(s, s + length) for s in range(0, self._num_featured - length + 1, stride)]
            complete = (len(ranges) // group) * group
            ranges = ranges[:complete]
        else:
            ranges = snip.snippet_ranges(num_faces, length, stride)
        out = []
        for chunk in snip.chunk_snippets(len(ranges), group):
            if chunk.start < self._next_snippet:
                continue
            chunk_ranges = [ranges[i] for i in chunk]
            out.extend(self._predict_chunk(chunk.start, chunk_ranges))
            self._next_snippet = chunk.stop
        keep_from = min(self._next_snippet * stride, self._num_featured - length)
        for blocks in (self._features, self._frame_indices, self._timestamps):
            blocks.drop_before(keep_from)
        return out

    def _predict_chunk(self, first_index: int, ranges: List[Tuple[int, int]]) -> List[SnippetPrediction]:
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        features, first = self._features.span(low, high)
        stacked = torch.stack([features[s - first : e - first] for s, e in ranges])
        values = self._model.predict_sequence(stacked)
        frame_indices, fi_first = self._frame_indices.span(low, high)
        timestamps, _ = self._timestamps.span(low, high)  # blocked as the frame indices are
        return snippet_predictions(first_index, ranges, values, frame_indices, timestamps, fi_first)


def snippet_predictions(first_index: int, ranges: Sequence[Tuple[int, int]], values: np.ndarray,
                        frame_indices: np.ndarray, timestamps_s: np.ndarray, first: int) -> List[SnippetPrediction]:
    """The ``SnippetPrediction``s of one GRU sequence.

    Args:
        first_index: the snippet index of ``ranges[0]``.
        ranges: S position ranges [start, end).
        values: float32 (S, L, 2), the network's output for them.
        frame_indices: int64, the video frame of positions ``first``, ``first + 1``, ...
        timestamps_s: float64, the presentation times of the same positions.
        first: the position of row 0 of ``frame_indices`` and ``timestamps_s``.
    """
    return [
        SnippetPrediction(
            snippet_index=first_index + i,
            positions=np.arange(s, e, dtype=np.int64),
            frame_indices=np.array(frame_indices[s - first : e - first], dtype=np.int64),
            timestamps_s=np.array(timestamps_s[s - first : e - first], dtype=np.float64),
            valence_arousal=values[i],
        )
        for i, (s, e) in enumerate(ranges)
    ]


def stitch_snippets(predictions: Iterable[SnippetPrediction]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-face rows of one track from its snippets; later snippets overwrite earlier ones (spec 9.1).

    Args:
        predictions: the track's snippets, in any order (they are sorted by ``snippet_index``).

    Returns:
        (frame_indices int64 (N,), timestamps_s float64 (N,), valence_arousal float32 (N, 2)).
    """
    ordered = sorted(predictions, key=lambda p: p.snippet_index)
    if not ordered:
        return np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros((0, 2), np.float32)
    num_faces = max(int(p.positions[-1]) + 1 for p in ordered)
    frame_indices = np.zeros(num_faces, dtype=np.int64)
    timestamps = np.zeros(num_faces, dtype=np.float64)
    for p in ordered:
        frame_indices[p.positions] = p.frame_indices
        timestamps[p.positions] = p.timestamps_s
    values = snip.stitch_ranges(num_faces, [(int(p.positions[0]), int(p.positions[-1]) + 1) for p in ordered],
                                [p.valence_arousal for p in ordered])
    return frame_indices, timestamps, values


class StreamingStitcher:
    """Stitches a track's snippets as they are emitted, releasing rows once no later snippet can overwrite them.

    A later snippet starts at or after ``last end - snippet_length`` (the end-aligned snippet starts at
    N - L with N >= last end), so only the last ``snippet_length`` rows are ever held back.
    """

    def __init__(self, snippet_length: int):
        self._length = snippet_length
        self._rows = {}  # position -> (frame index, timestamp_s, valence, arousal)
        self._released = 0

    def add(self, predictions: Iterable[SnippetPrediction]) -> List[Tuple[int, float, float, float]]:
        """Takes snippets in emission order; returns the rows that became final, in position order."""
        last_end = None
        for p in predictions:
            for position, frame, time_s, (valence, arousal) in zip(
                p.positions.tolist(), p.frame_indices.tolist(), p.timestamps_s.tolist(), p.valence_arousal.tolist()
            ):
                self._rows[position] = (frame, time_s, valence, arousal)
            last_end = int(p.positions[-1]) + 1
        if last_end is None:
            return []
        return self._release(last_end - self._length)

    def finish(self) -> List[Tuple[int, float, float, float]]:
        """Returns every row still held."""
        return self._release(self._released + len(self._rows))

    def _release(self, stop: int) -> List[Tuple[int, float, float, float]]:
        rows = [self._rows.pop(p) for p in range(self._released, stop) if p in self._rows]
        self._released = max(self._released, stop)
        return rows


def predict_face_sequence(model: MimamoModel, faces: Iterable[Tuple[int, float, np.ndarray]]
                          ) -> Iterator[Tuple[int, float, float, float]]:
    """Per-frame valence and arousal of one face's aligned crops, taken in the given order as one track.

    Streams: rows come out as soon as no later snippet can overwrite them, so memory stays flat in the sequence's
    length (``StreamingStitcher``).

    Args:
        model: the loaded networks.
        faces: ``(frame_index, timestamp_s, rgb)`` per face in frame order; ``rgb`` uint8 (H, W, 3).

    Yields:
        ``(frame_index, timestamp_s, valence, arousal)`` per face, in order.
    """
    track = model.new_track()
    stitcher = StreamingStitcher(model.config.snippet_length)
    for frame_index, timestamp_s, rgb in faces:
        yield from stitcher.add(track.add_face(frame_index, timestamp_s, rgb))
    yield from stitcher.add(track.finish())
    yield from stitcher.finish()

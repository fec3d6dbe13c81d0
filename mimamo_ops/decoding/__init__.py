"""Reading the inputs: videos (``video``: PyAV, upright RGB frames with true indices and times, damaged files
reported; from a local path or a ``sources.StreamSource`` that a caller streams from storage) and folders of aligned
faces that OpenFace wrote (``aligned_faces``).

May import ``mimamo_ops.runtime`` and ``mimamo_ops.errors``. Start reading at ``video.iter_frames``.
"""

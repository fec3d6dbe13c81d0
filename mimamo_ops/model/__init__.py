"""The MIMAMO-Net model (spec 3-9): everything that turns aligned faces into valence and arousal.

Holds the networks (``backbone``: ResNet-50 FER+, ``two_stream``), the micro-motion features (``pyramid``:
complex steerable pyramid, ``phase``: phase differences), sampling and stitching (``snippets``), strict loading
of the official checkpoints into them (``checkpoints``), running the backbone on a device (``backbone_runner``)
and the streaming per-track predictor (``predictor``).

May import ``mimamo_ops.runtime`` and ``mimamo_ops.errors``; never the face stage, the outputs or the weights
cache. Start reading at ``predictor.MimamoModel`` and ``predictor.TrackPredictor``.
"""

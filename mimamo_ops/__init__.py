"""MIMAMO-Net inference in plain Python, numpy and torch (no Apache Beam).

Modules, one job each: ``backbone`` (ResNet-50 FER+), ``pyramid`` (complex steerable pyramid),
``phase`` (phase-difference features), ``two_stream`` (the two-stream network), ``snippets``
(sampling and stitching), ``checkpoints`` (safe loading), ``weights`` (fetch, verify, cache),
``predictor`` (streaming per-frame valence/arousal from aligned faces), ``video`` and ``faces``.
"""

__version__ = "0.1.0"

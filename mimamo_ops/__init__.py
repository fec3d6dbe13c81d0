"""MIMAMO-Net inference in plain Python, numpy and torch: no Apache Beam here (``beam_pipeline`` builds on this).

Packages, by job (each ``__init__`` says more):

* ``model``: the published network and its numerics: ResNet-50 FER+ backbone, steerable pyramid, phase
  differences, two-stream net, snippets, strict checkpoint loading, the streaming predictor.
* ``weights``: the two official weight files on this machine: fetch, import, verify, cache; stand-ins.
* ``faces``: video in, per-frame aligned faces with person ids out (MTCNN or dlib, or OpenFace).
* ``decoding``: video decoding (PyAV) and folders of aligned faces.
* ``outputs``: what is made from predictions: smoothing, the seed's CSV, trend plots, the annotated video.
* ``runtime``: how things run here: runtime choice, OpenVINO, threads, CPU features, prefetch, cache folders.
* ``errors``: the exception types every package raises on purpose.

Layers (checked by import-linter, ``.importlinter``): ``outputs | faces | weights`` above ``model | decoding``,
above ``runtime``, above ``errors``; a package imports only from the layers below it. Start reading at
``model.predictor`` (the model side) and ``faces.builtin_stage`` (the face stage).
"""

__version__ = "0.1.0"

"""What is made from the predictions for people to read: smoothing (``smoothing``), the per-face series the
others take (``series``), the seed's per-video CSV (``seed_outputs``), trend plots (``plots``) and the video with
boxes and gauges (``annotate``).

May import ``mimamo_ops.decoding`` (the annotated video re-decodes its source), ``mimamo_ops.runtime`` and
``mimamo_ops.errors``; never the model or the face stage. Start reading at ``seed_outputs.write_seed_outputs``.
"""

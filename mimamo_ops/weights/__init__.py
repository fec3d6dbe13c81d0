"""The two official weight files on this machine (spec 5): fetch, import, verify and cache them; stand-ins.

``cache`` downloads (Google Drive confirmation pages handled), imports and verifies the files into the user
cache and records their SHA-256 in ``manifest.json``; ``standins`` writes deterministic seeded weights in the
official formats for runs without the real ones.

May import ``mimamo_ops.model`` (to verify a file against the networks), ``mimamo_ops.runtime`` and
``mimamo_ops.errors``. Start reading at ``cache.resolve_weights``.
"""

"""How the networks run on this machine, whatever they compute.

``selection`` (which runtime: eager torch or OpenVINO), ``openvino_models`` (conversion and the on-disk cache of
converted networks), ``threads`` (each worker process's share of the cores), ``cpu_features`` (bf16 units read
at run time), ``prefetch`` (a bounded background iterator) and ``cache_dirs`` (the user cache folder).

May import third-party libraries and ``mimamo_ops.errors`` only: every other package builds on it. Start
reading at ``selection.resolve_runtime``.
"""

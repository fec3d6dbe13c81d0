"""The ``mimamo`` command line: ``main`` (the parser, one module per sub-command in ``commands``), progress bars
(``progress``), run reports (``report``, DuckDB over the output tables) and ``make demo`` (``demo``).

Calls the Beam side through ``beam_pipeline.run`` and ``beam_pipeline.options``; nothing outside this package
imports it. Start reading at ``main.main``.
"""

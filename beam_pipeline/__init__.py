"""The Apache Beam side: transforms, sinks, options and the ``run`` entry point, built on ``mimamo_ops``.

The Beam graph: ``transforms`` (DoFns and composite transforms: match, predict, assemble, summarise),
``sinks`` (the Parquet tables), ``options`` and ``flags`` (``MimamoOptions``), ``inputs`` (expanding files,
folders, globs and lists), ``remote_files`` (remote videos and weights on workers), ``commits``, ``resume`` and
``watch`` (committed batches, resuming, watch mode), ``progress_records`` (the workers' progress files),
``beam_compat`` (the few places that need Beam internals), ``library_warnings`` (libraries' warnings to the log,
not the console), ``pipeline`` (``build_pipeline``) and ``run`` (``python -m beam_pipeline.run``).

The command line lives in ``cli`` (``mimamo``: sub-commands, progress bars, reports, the demo); only ``cli``
imports it, and only it draws bars or reads reports. May import ``mimamo_ops`` and Apache Beam. Start reading at
``pipeline.build_pipeline``.
"""

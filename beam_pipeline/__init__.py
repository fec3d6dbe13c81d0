"""The Apache Beam side: options, DoFns, transforms, sinks and the ``run`` entry point."""

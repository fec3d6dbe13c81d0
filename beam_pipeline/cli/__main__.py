"""``python -m beam_pipeline.cli``: the ``mimamo`` command."""
import sys

from beam_pipeline.cli.main import main

sys.exit(main())

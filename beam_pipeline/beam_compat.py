"""The three places where this project reaches into Apache Beam below its public API, kept in one module.

Each exists because Beam has no public way to do it; each is checked by a test on the Beam releases that
``make test`` installs (``tests/pipeline/test_beam_compat.py``). Checked on Beam 2.62.0 and 2.78.0.

* ``make_local_runner``: the runner of a local run. Since 2.6x the ``DirectRunner`` first tries the Prism
  runner, which downloads a binary from GitHub when none is cached, so a local run would touch the network; the
  DirectRunner's own fallback, Beam's Python ``FnApiRunner``, is built here the way the DirectRunner builds it
  (``apache_beam/runners/direct/direct_runner.py``: the options go into the provision info, which the
  ``multi_processing`` workers read). Selecting it with ``--runner=<dotted path>`` would drop those options.
* ``use_anonymous_gcs_for_emulator``: with ``$STORAGE_EMULATOR_HOST`` set, Beam's GCS client would spend tens
  of seconds retrying a credential lookup that an emulator never needs (``apache_beam/internal/gcp/auth.py``
  ignores ``--no_auth``); the process's credentials are set to "none" instead.
* ``undo_output_abbreviation``: Beam releases whose option parser accepts abbreviated flags (2.62 does; 2.78
  parses with ``allow_abbrev=False``) read our ``--output DIR`` also as ``PortableOptions``'
  ``--output_executable_path DIR``, and a Flink or Spark job server then writes a jar there instead of running
  the job.
"""
import os
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from apache_beam.portability.api import beam_provision_api_pb2
from apache_beam.runners.portability.fn_api_runner import fn_runner
from apache_beam.runners.portability.portable_runner import JobServiceHandle

__all__ = ["LOCAL_RUNNERS", "STORAGE_EMULATOR_ENV", "make_local_runner", "undo_output_abbreviation",
           "use_anonymous_gcs_for_emulator"]

LOCAL_RUNNERS = (None, "DirectRunner", "direct", "SwitchingDirectRunner")
STORAGE_EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def make_local_runner(options: PipelineOptions) -> Optional[fn_runner.FnApiRunner]:
    """The runner of a local run: for the DirectRunner (or none given), Beam's Python FnApiRunner, else None.

    It is the runner the DirectRunner falls back to, built the same way (the options in its provision
    info), without the DirectRunner's first attempt at the Prism runner. It honours ``--direct_num_workers``
    and ``--direct_running_mode``.
    """
    if options.view_as(StandardOptions).runner not in LOCAL_RUNNERS:
        return None
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision_info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision_info)


def use_anonymous_gcs_for_emulator() -> bool:
    """With ``$STORAGE_EMULATOR_HOST`` set, makes Beam talk to the emulator without looking up credentials.

    The Cloud Storage client connects anonymously to an emulator anyway. Without the variable nothing changes,
    so real ``gs://`` access keeps its normal credential lookup.

    Returns:
        Whether the emulator variable was set (and the lookup skipped).
    """
    if not os.environ.get(STORAGE_EMULATOR_ENV):
        return False
    from apache_beam.internal.gcp import auth  # pylint: disable=import-outside-toplevel  # the GCP extra only

    with auth._Credentials._credentials_lock:  # pylint: disable=protected-access
        auth._Credentials._credentials = None  # pylint: disable=protected-access
        auth._Credentials._credentials_init = True  # pylint: disable=protected-access
    return True


def undo_output_abbreviation(options: PipelineOptions, output: Optional[str]) -> None:
    """Drops ``--output_executable_path`` when it is only our ``--output`` read as its abbreviation."""
    portable = options.view_as(PortableOptions)
    if portable.output_executable_path and portable.output_executable_path == output:
        portable.output_executable_path = None

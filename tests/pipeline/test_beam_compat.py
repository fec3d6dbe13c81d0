"""The adapter around Beam internals (``beam_pipeline.beam_compat``) on the installed Beam release.

``make_local_runner`` is tested with real runs in ``test_local_runner.py``; the credential shortcut for the GCS
emulator and the ``--output`` abbreviation are tested here.
"""
import google.auth
from apache_beam.internal.gcp import auth
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from beam_pipeline.beam_compat import STORAGE_EMULATOR_ENV, undo_output_abbreviation, use_anonymous_gcs_for_emulator


def test_output_no_longer_doubles_as_the_output_executable_path(tmp_path):
    """Beam 2.62 parses abbreviated flags; whether its parse makes the abbreviation depends on which option
    classes the process has registered, so the test sets the abbreviated value itself."""
    options = PipelineOptions(["--input", str(tmp_path), "--output", str(tmp_path / "out")])
    options.view_as(PortableOptions).output_executable_path = str(tmp_path / "out")  # what the abbreviation gives
    undo_output_abbreviation(options, str(tmp_path / "out"))
    assert options.view_as(PortableOptions).output_executable_path is None
    assert "output_executable_path" not in options.get_all_options(drop_default=True)


def test_an_explicit_output_executable_path_is_kept(tmp_path):
    options = PipelineOptions(["--output", str(tmp_path / "out"), "--output_executable_path", str(tmp_path / "a.jar")])
    undo_output_abbreviation(options, str(tmp_path / "out"))
    assert options.view_as(PortableOptions).output_executable_path == str(tmp_path / "a.jar")


def test_the_emulator_gets_no_credential_lookup_and_real_gcs_keeps_it(monkeypatch):
    monkeypatch.delenv(STORAGE_EMULATOR_ENV, raising=False)
    assert not use_anonymous_gcs_for_emulator()
    monkeypatch.setenv(STORAGE_EMULATOR_ENV, "http://127.0.0.1:1")
    lookups = []
    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: lookups.append(args) or (None, None))
    assert use_anonymous_gcs_for_emulator()
    assert auth.get_service_credentials(PipelineOptions([])) is None
    assert lookups == []  # without the shortcut Beam asks google.auth, and retries for tens of seconds offline

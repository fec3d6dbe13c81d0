"""Beam 2.62 parses abbreviated flags: ``--output`` must not reach a job server as ``--output_executable_path``
(the Flink job server then writes a jar to the output folder and runs nothing). Whether Beam's parse makes the
abbreviation depends on which option classes the process has registered (it did in the submission path of the
cluster runs, not in a bare process), so the tests set the abbreviated value themselves."""
from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions

from beam_pipeline.run import _undo_output_abbreviation  # pylint: disable=protected-access


def test_output_no_longer_doubles_as_the_output_executable_path(tmp_path):
    options = PipelineOptions(["--input", str(tmp_path), "--output", str(tmp_path / "out")])
    options.view_as(PortableOptions).output_executable_path = str(tmp_path / "out")  # what the abbreviation gives
    _undo_output_abbreviation(options)
    assert options.view_as(PortableOptions).output_executable_path is None
    assert "output_executable_path" not in options.get_all_options(drop_default=True)


def test_an_explicit_output_executable_path_is_kept(tmp_path):
    options = PipelineOptions(["--output", str(tmp_path / "out"), "--output_executable_path", str(tmp_path / "a.jar")])
    _undo_output_abbreviation(options)
    assert options.view_as(PortableOptions).output_executable_path == str(tmp_path / "a.jar")

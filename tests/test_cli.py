"""The ``mimamo`` entry point: sub-command registry and ``@file`` option files."""
import pytest

from beam_pipeline.cli import build_parser, main


def test_every_sub_command_is_registered():
    actions = [a for a in build_parser()._actions if a.dest == "command"]
    assert set(actions[0].choices) == {"weights", "predict-aligned", "faces", "run", "report", "plot"}


def test_option_file_accepts_one_option_per_line_with_spaces_and_comments(tmp_path):
    options = tmp_path / "options.txt"
    options.write_text('# edit once, run often\n--output "out dir"\n\n--smoothing_size 0.5\n--multi_face\n')
    args, extra = build_parser().parse_known_args(["run", "videos/", f"@{options}"])
    assert (args.command, args.inputs, extra) == ("run", ["videos/"], [])
    assert (args.output, args.smoothing_size, args.multi_face) == ("out dir", 0.5, True)


def test_unknown_command_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as error:
        main(["no-such-command"])
    assert error.value.code == 2
    assert "invalid choice" in capsys.readouterr().err

"""The ``mimamo`` entry point: sub-command registry and ``@file`` option files."""
import pytest

from beam_pipeline.cli.main import build_parser, main


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


# Libraries `mimamo --help` and `mimamo run --help` must not load: Beam, torch and the model runtimes, plotting,
# the warehouse, the cloud clients (the bare ``google.cloud`` namespace is loaded at start-up by an installed
# ``*-nspkg.pth`` file, so its client packages are checked instead).
_HEAVY_MODULES = ("apache_beam", "torch", "openvino", "cv2", "matplotlib", "duckdb", "google.cloud.storage",
                  "boto3", "botocore")


def _modules_loaded_by(argv: list) -> set:
    """Runs ``mimamo ARGV`` in a fresh interpreter and returns which of ``_HEAVY_MODULES`` it imported."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from beam_pipeline.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {list(_HEAVY_MODULES)!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["weights", "show", "--help"]])
def test_help_imports_no_heavy_library(argv):
    assert _modules_loaded_by(argv) == set()


def test_top_level_summaries_are_what_each_command_registers():
    from beam_pipeline.cli.main import COMMAND_SUMMARIES

    full = [a for a in build_parser()._actions if a.dest == "command"][0]
    registered = {choice.dest: choice.help for choice in full._choices_actions}
    assert registered == COMMAND_SUMMARIES


def test_command_named_in_an_option_file_is_registered_in_full(tmp_path, capsys):
    options = tmp_path / "options.txt"
    options.write_text("weights\nshow\n--cache-dir\n" + str(tmp_path / "empty") + "\n")
    assert main([f"@{options}"]) == 1  # both files missing
    assert "missing: run `mimamo weights fetch`" in capsys.readouterr().out


# Every command a user types for help, as they type it. Beam's dependencies (the Google Cloud clients) print
# FutureWarnings as they load; the entry points send them to the log, so nothing may reach stderr.
_HELP_COMMANDS = [
    ["mimamo", "--help"],
    *[["mimamo", command, "--help"] for command in ("weights", "predict-aligned", "faces", "run", "report", "plot")],
    *[["mimamo", "weights", action, "--help"] for action in ("fetch", "import", "show")],
    ["python", "-m", "beam_pipeline.cli", "--help"],
    ["python", "-m", "beam_pipeline.run", "--help"],
    ["python", "-m", "beam_pipeline.cli.demo", "--help"],
]


@pytest.fixture(scope="module")
def help_of(tmp_path_factory):
    """``help_of(command)``: the finished ``command`` (a list as in ``_HELP_COMMANDS``), run once per module in a
    fresh process as a user runs it, from an empty folder, without ``$PYTHONWARNINGS``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cwd = tmp_path_factory.mktemp("help")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    done = {}

    def run(command: list):
        if tuple(command) not in done:
            executable = sys.executable if command[0] == "python" else str(Path(sys.executable).with_name(command[0]))
            done[tuple(command)] = subprocess.run([executable, *command[1:]], cwd=str(cwd), env=env,
                                                  capture_output=True, text=True, timeout=120, check=False)
        return done[tuple(command)]
    return run


@pytest.mark.parametrize("command", _HELP_COMMANDS, ids=" ".join)
def test_help_prints_nothing_on_stderr(command, help_of):
    done = help_of(command)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert done.stderr == ""


def test_beam_pipeline_run_help_lists_the_pipeline_options(help_of):
    # Beam's PipelineOptions alone answers --help with a bare "usage: run.py [-h]"
    done = help_of(["python", "-m", "beam_pipeline.run", "--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m beam_pipeline.run")
    for option in ("--input", "--output", "--smoothing_size", "--videos_per_commit", "--runtime"):
        assert f"  {option} " in done.stdout, option

"""``beam_pipeline.library_warnings``: libraries' warnings and thread errors become log records, the project's
stay on stderr.

Each case runs in a fresh interpreter, as an entry point does: the hook changes process-wide state
(``warnings.showwarning``, the ``py.warnings`` logger, ``PYTHONWARNINGS``).
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# A stand-in for a Google client library: it warns as it loads, and again when called.
FAKE_LIBRARY = '''
import warnings
warnings.warn("grpcio < 1.83.0 is deprecated", FutureWarning)

def call():
    warnings.warn("this call is deprecated", FutureWarning, stacklevel=1)

def read_responses():  # as Beam's gRPC reader thread ends when the job server closes its connection
    raise ConnectionError("Socket closed")
'''


def run_python(script: str, tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess:
    """Runs ``script`` in a fresh interpreter that finds the project and ``fake_library`` (in ``tmp_path``)."""
    (tmp_path / "fake_library.py").write_text(FAKE_LIBRARY)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(tmp_path)])
    env.update(extra_env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=120, check=True)


def test_library_warnings_reach_the_log_file_opened_later_and_not_stderr(tmp_path):
    done = run_python("""
        import logging
        from beam_pipeline.library_warnings import attach_log_file, detach_log_file, log_library_warnings
        log_library_warnings()
        logging.basicConfig(level=logging.INFO)  # a console handler on the root logger, as `mimamo` has
        import fake_library  # warns as it loads, before any log file exists
        log = logging.FileHandler("run.log")
        attach_log_file(log)
        fake_library.call()  # warns while the log is open
        detach_log_file(log)
        log.close()
    """, tmp_path)
    assert done.stderr == ""
    log = (tmp_path / "run.log").read_text()
    assert "FutureWarning: grpcio < 1.83.0 is deprecated" in log
    assert "FutureWarning: this call is deprecated" in log


def test_without_a_log_file_library_warnings_go_nowhere(tmp_path):
    done = run_python("""
        from beam_pipeline.library_warnings import log_library_warnings
        log_library_warnings()
        import fake_library
        fake_library.call()
    """, tmp_path)
    assert (done.stdout, done.stderr) == ("", "")


def test_the_projects_own_warnings_stay_on_stderr(tmp_path):
    done = run_python("""
        import warnings
        import mimamo_ops.decoding
        from beam_pipeline.library_warnings import log_library_warnings
        log_library_warnings()
        warnings.warn_explicit("odd frame size: the pyramid is inexact", UserWarning,
                               mimamo_ops.decoding.__file__, 1)
    """, tmp_path)
    assert "UserWarning: odd frame size: the pyramid is inexact" in done.stderr
    assert "decoding" in done.stderr  # Python's own format: the file and line come first


def test_child_python_processes_do_not_repeat_library_warnings(tmp_path):
    # Beam's local worker processes (--n_workers) load the same libraries in a fresh interpreter
    done = run_python("""
        import subprocess, sys
        from beam_pipeline.library_warnings import log_library_warnings
        log_library_warnings()
        subprocess.run([sys.executable, "-c", "import fake_library"], check=True)
    """, tmp_path)
    assert done.stderr == ""


def test_a_users_own_pythonwarnings_is_kept_for_child_processes(tmp_path):
    done = run_python("""
        import subprocess, sys
        from beam_pipeline.library_warnings import log_library_warnings
        log_library_warnings()
        subprocess.run([sys.executable, "-c", "import fake_library"], check=True)
    """, tmp_path, PYTHONWARNINGS="error::UserWarning")  # FutureWarning keeps Python's default: shown
    assert "FutureWarning: grpcio < 1.83.0 is deprecated" in done.stderr


def test_the_run_log_holds_the_library_warnings_raised_before_it_was_opened(tmp_path):
    done = run_python("""
        from beam_pipeline.cli.commands.run import close_run_log, open_run_log
        from beam_pipeline.library_warnings import log_library_warnings
        log_library_warnings()
        import fake_library
        log = open_run_log("out")
        close_run_log(log)
        print(log.baseFilename)
    """, tmp_path)
    assert done.stderr == ""
    log = Path(done.stdout.strip())
    assert log.parent == tmp_path / "out" / "_logs"
    assert "py.warnings WARNING" in log.read_text() and "grpcio < 1.83.0 is deprecated" in log.read_text()


def test_an_exception_ending_a_librarys_thread_goes_to_the_log_and_one_in_the_projects_code_to_stderr(tmp_path):
    done = run_python("""
        import logging
        import threading
        from beam_pipeline.library_warnings import attach_log_file, is_project_file, log_library_warnings
        log_library_warnings()
        logging.basicConfig(level=logging.INFO)
        log = logging.FileHandler("run.log")
        attach_log_file(log)
        import fake_library
        for name, target, args in (("read_grpc_client_inputs", fake_library.read_responses, ()),
                                   ("ours", is_project_file, (None,))):
            thread = threading.Thread(target=target, args=args, name=name)
            thread.start()
            thread.join()
        log.close()
    """, tmp_path)
    assert "Exception in thread ours" in done.stderr and "TypeError" in done.stderr
    assert "Socket closed" not in done.stderr and "read_grpc_client_inputs" not in done.stderr
    log = (tmp_path / "run.log").read_text()
    assert "exception in thread read_grpc_client_inputs of a library" in log
    assert "ConnectionError: Socket closed" in log and "Traceback" in log
    assert "TypeError" not in log

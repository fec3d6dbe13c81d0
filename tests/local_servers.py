"""Servers that tests start on 127.0.0.1: a free port, and a process that is stopped afterwards."""
import contextlib
import socket
import subprocess
import time
from typing import IO, Iterator, List, Mapping, Optional, Union

STARTUP_TIMEOUT_S = 60
BUCKET = "mimamo-test"  # the bucket the storage servers start with


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(command: List[str], port: int, what: str, env: Optional[Mapping[str, str]] = None,
          output: Union[int, IO[bytes]] = subprocess.DEVNULL) -> Iterator[None]:
    """Runs ``command`` (an argument list), waits until 127.0.0.1:``port`` accepts connections, stops it after.

    Args:
        command: the server's argument list.
        port: the port it listens on.
        what: its name, for the start-up failure message.
        env: its environment (default: this process's).
        output: where its stdout and stderr go.
    """
    process = subprocess.Popen(command, env=env, stdout=output, stderr=output)  # pylint: disable=consider-using-with
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None and time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)

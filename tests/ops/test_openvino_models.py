"""OpenVINO in one process: many compiled networks, freed in any order, leave signal handling intact."""
import subprocess
import sys

_PROGRAM = """
import gc, signal
from mimamo_ops.faces.mtcnn_model import MtcnnDetector
first, second, third = (MtcnnDetector(runtime="openvino") for _ in range(3))
for name in ("second", "first", "third"):
    del globals()[name]
    gc.collect()
caught = []
signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
signal.raise_signal(signal.SIGINT)
print("caught", caught)
"""


def test_ctrl_c_after_compiled_networks_were_freed_out_of_order_reaches_the_python_handler():
    """OpenVINO's CPU plugin swaps the thread's alternate signal stack per engine: with an engine per network,
    freeing them out of order left a freed stack installed and Ctrl-C crashed the process (SIGSEGV in watch
    mode). A fresh interpreter, so that a crash cannot take the test session with it."""
    done = subprocess.run([sys.executable, "-c", _PROGRAM], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "caught [2]"

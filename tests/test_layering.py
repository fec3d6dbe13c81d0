"""The layering of ``mimamo_ops`` and ``beam_pipeline`` (``.importlinter``), checked by import-linter.

Contracts: no import circles at any depth; ``mimamo_ops`` never imports Apache Beam or ``beam_pipeline``; the
layers of each package (the model never imports the face stage, the outputs or the weights cache; only the
command line imports the command line); only the command line draws progress bars and reads reports.
"""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_layering_contract_is_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--config", str(REPO / ".importlinter"), "--no-cache"],
                            cwd=str(REPO), capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "5 kept" in result.stdout, result.stdout[-2000:]

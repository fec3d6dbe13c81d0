"""Loads the small expected outputs copied from the parity cases (tests/data/parity)."""
import pathlib

import numpy as np

PARITY_DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "parity"


def load_expected(name: str) -> dict:
    """Returns the arrays of ``tests/data/parity/<name>`` as a plain dict."""
    with np.load(PARITY_DIR / name) as data:
        return {key: data[key] for key in data.files}

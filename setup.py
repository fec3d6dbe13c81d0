"""Packaging for mimamo-beam: MIMAMO-Net video emotion recognition as an Apache Beam plugin."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "mimamo_ops" / "__init__.py").read_text()).group(1)
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="mimamo-beam",
    version=VERSION,
    description="MIMAMO-Net valence/arousal prediction for video corpora, as an Apache Beam pipeline",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mimamo_ops", "mimamo_ops.*", "beam_pipeline", "beam_pipeline.*"]),
    install_requires=REQUIREMENTS,
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-xdist>=3.5",  # `make test` runs the suite on every CPU (Makefile)
            "pyrtools>=1.1",
            "scikit-image>=0.21",
            "gcp-storage-emulator>=2024.1",
            "moto[server]>=5.0",
            "import-linter>=2.17",  # the layering contract (.importlinter, tests/test_layering.py)
        ],
    },
    entry_points={"console_scripts": ["mimamo = beam_pipeline.cli.main:main"]},
)

"""The Beam range the package declares, and the two releases ``make test`` runs it on."""
import re
from pathlib import Path

import apache_beam
from packaging.requirements import Requirement
from packaging.version import Version

from cluster.versions import BEAM_VERSION

REPO = Path(__file__).resolve().parents[1]


def _beam_requirement() -> Requirement:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return next(Requirement(line.split("#")[0]) for line in lines if line.startswith("apache-beam"))


def test_the_cluster_environment_is_at_the_release_whose_job_servers_are_built():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^CLUSTER_BEAM := (\S+)$", makefile, re.MULTILINE).group(1) == BEAM_VERSION


def test_the_declared_range_holds_both_tested_releases_and_is_not_a_pin():
    requirement = _beam_requirement()
    assert Version(BEAM_VERSION) in requirement.specifier
    assert Version(apache_beam.__version__) in requirement.specifier
    assert Version("2.78.0") in requirement.specifier and Version("3.0.0") not in requirement.specifier
    assert {"gcp", "aws", "dataframe"} <= requirement.extras

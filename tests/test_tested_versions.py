"""The versions the suite last passed with are recorded (.ci/constraints.txt) and agree
with what pyproject.toml asks for; the run's header names the versions it resolved."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pandas as pd
from conftest import main_dependency_versions, pytest_report_header
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"


def pins() -> dict[str, str]:
    out = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def test_constraints_pin_every_requirement_within_its_bounds():
    pinned = pins()
    for text in metadata.requires("quests-dashboard"):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
            continue  # an extra the suite does not install (gpu, sample-data)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is not recorded in {CONSTRAINTS.name}"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"{req.name}=={pinned[name]} is outside {req.specifier}"
    assert "quests-dashboard" not in pinned  # the package itself is never pinned


def test_the_header_names_the_resolved_versions():
    versions = main_dependency_versions()
    assert versions["pandas"] == pd.__version__
    assert versions["numpy"] == metadata.version("numpy")
    header = pytest_report_header(None)
    assert f"pandas {pd.__version__}" in header and f"panel {metadata.version('panel')}" in header

"""The nucleation analysis lives in quests_core.analysis.clusters and .cnt only: the former
transition module quests_core.analysis.nucleation is gone and no code imports it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: an import of the former module, in any of its spellings
FORMER = re.compile(r"analysis\.nucleation\b|from\s+quests_core\.analysis\s+import\s+[^\n]*"
                    r"\bnucleation\b")


def test_the_transition_module_is_gone():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("quests_core.analysis.nucleation")
    assert not (ROOT / "quests_core" / "analysis" / "nucleation.py").exists()


def test_nothing_imports_it():
    offenders = []
    for folder in ("quests_core", "dashboard", "benchmarks", "tests", "sample_data"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == Path(__file__).name:
                continue
            if FORMER.search(path.read_text(encoding="utf-8", errors="replace")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
    assert FORMER.search("from quests_core.analysis import clusters, nucleation")
    assert not FORMER.search("from quests_core.analysis import clusters, cnt")

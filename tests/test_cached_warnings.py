"""What reading a file warned about is repeated when the result comes from the cache.

The first run of a command reads the file, skips a cut last frame (or frames that end
before the file does) with one warning line, and caches the descriptors; the second
run of the same command is served from the cache without parsing the file. It used to
exit 0 with fewer frames and no word. Every "warning" case of the hostile corpus (and
the binary MD ones where the ``md`` extra is installed) is run twice here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from quests_core.cache import DescriptorCache
from quests_core.io import TruncatedFrameWarning
from quests_core.io_mdanalysis import mdanalysis_available
from quests_core.pipeline import file_descriptors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_files import make_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def warning_cases(tmp_path_factory):
    corpus = make_corpus(tmp_path_factory.mktemp("hostile"), md=mdanalysis_available())
    cases = [c for c in corpus if c.expected == "warning"]
    assert len(cases) >= 5  # the cut last frame of extxyz, xyz, LAMMPS, PDB, a cut line
    return cases


def _entropy(path, cache_dir):
    env = dict(os.environ, QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "entropy", str(path), "--no-progress",
         "--cache-dir", str(cache_dir), "-k", "8", "--cutoff", "4"],
        capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


def _warned_frames(stderr: str, path: Path) -> list[str]:
    """Frames named by the warnings about ``path`` that name one (a LAMMPS dump also
    gets the note on its step times)."""
    lines = [x for x in stderr.splitlines() if x.startswith("warning:") and path.name in x]
    found = [re.search(r": frame (\d+)", x) for x in lines]
    return [m.group(1) for m in found if m]


@pytest.mark.timeout(600)
def test_cli_repeats_input_warnings_on_a_cached_rerun(warning_cases, tmp_path):
    for case in warning_cases:
        cache = tmp_path / f"cache-{case.name}"
        first, second = _entropy(case.path, cache), _entropy(case.path, cache)
        for run in (first, second):
            assert run.returncode == 0, f"{case.name}: {run.stderr[-1000:]}"
            assert "Traceback" not in run.stderr
        frames = _warned_frames(first.stderr, case.path)
        assert len(frames) == 1, f"{case.name}: {first.stderr}"
        assert _warned_frames(second.stderr, case.path) == frames, \
            f"{case.name}: second run (cached): {second.stderr}"
        assert "from the cache" in second.stderr
        assert second.stdout == first.stdout, case.name  # same numbers, same frames


def test_api_repeats_the_skipped_frames_and_keeps_them_on_the_dataset(warning_cases,
                                                                       tmp_path):
    case = next(c for c in warning_cases if c.name.startswith("extxyz_cut_in_last_frame"))
    cache = DescriptorCache(tmp_path / "cache")
    seen = []
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = file_descriptors(case.path, k=8, cutoff=4.0, cache=cache)
        seen.append([str(w.message) for w in caught
                     if issubclass(w.category, TruncatedFrameWarning)])
        ((path, frame, reason),) = res.dataset.skipped_frames
        assert path == str(case.path) and frame == len(res.dataset.frames)
        assert "ends inside" in reason
    assert cache.misses == 1 and cache.hits == 1
    assert len(seen[0]) == len(seen[1]) == 1
    assert seen[1][0] == f"{case.path}: frame {frame}: {reason}; not read (result from the cache)"


def test_dashboard_repeats_the_skipped_frame_on_a_cached_rerun(warning_cases, tmp_path,
                                                               monkeypatch):
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compute, "_CACHE", None)
    case = next(c for c in warning_cases if c.name.startswith("lammps_cut_in_last_frame"))
    spec = FileSpec(str(case.path), case.path.name, "trajectory")
    settings = ComputeSettings(learning_max_n=50, learning_repeats=1, overlap_max_n=50,
                               k=8, cutoff=4.0).frozen()
    notes = []
    for _ in range(2):
        res = run_pipeline([spec], settings)
        notes.append([w for w in res.warnings if "skipped" in w])
    assert compute._CACHE is not None and compute._CACHE.hits >= 1  # second run cached
    assert len(notes[0]) == 1 and notes[1] == notes[0]
    assert re.search(rf"{re.escape(case.path.name)}: frame \d+ skipped", notes[0][0])


def test_dashboard_words_a_garbage_tail_apart_from_a_frame_being_written(tmp_path):
    """A cut last frame may be a file still being written; frames that end before the
    file does (garbage after an XTC) are not: the Data tab says which."""
    from types import SimpleNamespace

    from dashboard.compute import Loaded, file_warnings
    from dashboard.state import FileSpec

    spec = FileSpec(str(tmp_path / "run.xtc"), "run.xtc", "trajectory")
    garbage = ("at byte 2124: not a GROMACS XTC frame (magic number 7, expected 1995); "
               "reading stopped there: 10 frames read, the last 1000 bytes of the file ignored")
    dataset = SimpleNamespace(structures=[], skipped_frames=[
        (spec.path, 10, garbage), (spec.path, 3, "the file ends inside it")])
    assert file_warnings([Loaded(spec, dataset)]) == [
        f"run.xtc: frame 10: {garbage}",
        "run.xtc: frame 3 skipped, the file ends inside it (the last frame of a file still "
        "being written?)"]

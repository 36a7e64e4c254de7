"""The hostile-input corpus (tests/hostile_files.py) through the loader and the CLI (issue 11).

Every case must end as its ``expected`` outcome says: read with finite
descriptors (``ok``), read without its truncated last frame and with one
warning naming the file (``warning``), or one one-line ``QuestsError`` naming
the file (``error``); never a traceback, a signal or a hang.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import quests_core as qc
from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.io import TruncatedFrameWarning, locate_error
from quests_core.io_mdanalysis import mdanalysis_available

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_files import MD_FORMATS, make_corpus, summary  # noqa: E402

#: the binary MD trajectories join the corpus where the ``md`` extra is installed
MD = mdanalysis_available()

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "sample_data" / "cu_solid_400K.extxyz"
#: seconds one case may take in process (the slowest, the gzip bomb, takes ~1 s)
CASE_BOUND = 15.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("hostile"), md=MD)


def _one_line_naming(text: str, case) -> str | None:
    """None when ``text`` is one line naming the case's file, else the complaint."""
    if "\n" in text.strip():
        return f"more than one line: {text!r}"
    if case.path.name not in text:
        return f"does not name the file: {text!r}"
    return None


def _describe(structures):
    try:
        x = qc.descriptors(structures, k=8, cutoff=4.0, n_threads=1)
    except QuestsError as exc:
        raise locate_error(exc, structures) from None
    return x


def _loader_outcome(case) -> tuple[str, str]:
    """('ok' | 'warning' | 'error', message) of one case through Dataset.from_files."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = Dataset.from_files(case.path)
            x = _describe(ds.structures)
        except QuestsError as exc:
            return "error", str(exc)
    if not np.isfinite(x).all():
        return "nan", "descriptors are not finite"
    if case.frames is not None and len(ds.structures) != case.frames:
        return "bad-frames", f"read {len(ds.structures)} frames, expected {case.frames}"
    truncated = [w for w in caught if issubclass(w.category, TruncatedFrameWarning)]
    if truncated:
        if len(ds.skipped_frames) != 1 or len(truncated) != 1:
            return "bad-warning", f"skipped_frames = {ds.skipped_frames}"
        return "warning", str(truncated[0].message)
    return "ok", ""


@pytest.mark.timeout(300)
def test_corpus_through_the_loader(corpus):
    counts = summary(corpus)
    assert len(corpus) >= 150 and set(counts) == {
        "extxyz", "xyz", "lammps", "gro", "cif", "pdb", "vasp", "traj", "json"
    } | (set(MD_FORMATS) if MD else set()), counts
    failures = []
    for case in corpus:
        start = time.perf_counter()
        try:
            got, message = _loader_outcome(case)
        except Exception as exc:  # noqa: BLE001 - a crash of the loader is a failure
            got, message = "crash", f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - start
        problems = []
        if elapsed > CASE_BOUND:
            problems.append(f"took {elapsed:.1f} s")
        if case.expected == "any":
            if got not in ("ok", "error"):
                problems.append(f"got {got}")
        elif got != case.expected:
            problems.append(f"expected {case.expected}, got {got}")
        if got in ("error", "warning"):
            complaint = _one_line_naming(message, case)
            if complaint:
                problems.append(complaint)
            if case.match and not re.search(case.match, message):
                problems.append(f"does not match {case.match!r}")
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)} [{message[:200]}]")
    assert not failures, "\n".join(failures)


def test_frame_and_axis_in_cell_messages(corpus):
    by_name = {c.name: c for c in corpus}
    with pytest.raises(QuestsError) as info:
        Dataset.from_files(by_name["extxyz_collapsed_cell.extxyz"].path)
    assert re.search(r"extxyz_collapsed_cell.extxyz: frame 0: .*axis a", str(info.value))
    # an error of the descriptor engine names the file and the frame, not the chunk position
    ds = Dataset.from_files(by_name["extxyz_tiny_cell_scaled.extxyz"].path, index="1:")
    with pytest.raises(QuestsError, match=r"extxyz_tiny_cell_scaled.extxyz: frame 1: "):
        _describe(ds.structures)


def _cli(args, timeout=120):
    env = dict(os.environ, QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="1")
    quiet = ["--quiet"] if args[0] == "nucleation" else ["--no-progress", "--no-cache"]
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", *map(str, args), *quiet,
         "-k", "8", "--cutoff", "4"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _check_finite(stdout: str, case) -> None:
    """The computed quantities printed by the CLI are finite (time/temperature may be NaN)."""
    assert not {"inf", "-inf"} & set(stdout.lower().split()), f"{case.name}: {stdout}"
    for line in stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].startswith(("H", "D", "mean_dH", "frac", "max_dH")):
            assert np.isfinite(float(words[1])), f"{case.name}: {line}"


def _check_run(proc, case, *, batch=False):
    """Exit status and stderr of one CLI run against the case's outcome."""
    err = proc.stderr
    assert proc.returncode >= 0, f"{case.name}: killed by signal {-proc.returncode}"
    assert "Traceback" not in err and "internal error" not in err, f"{case.name}: {err}"
    if case.expected in ("ok", "warning") or (case.expected == "any" and proc.returncode == 0):
        assert proc.returncode == 0, f"{case.name}: exit {proc.returncode}: {err}"
        _check_finite(proc.stdout, case)
        # warnings about frames (other notes, e.g. LAMMPS step units, may come too)
        warns = [x for x in err.splitlines() if x.startswith("warning:") and ": frame " in x]
        if case.expected == "warning":
            assert len(warns) == 1 and case.path.name in warns[0], err
            assert re.search(case.match, warns[0]), f"{case.name}: {err}"
    else:
        assert proc.returncode == 1, f"{case.name}: exit {proc.returncode}: {err}"
        lines = [x for x in err.strip().splitlines() if not x.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{case.name}: {err}"
        assert case.path.name in lines[0], f"{case.name}: {err}"
        assert re.search(case.match, lines[0]), f"{case.name}: {err}"


#: one representative per kind of damage and format (each a separate CLI process)
_CLI_CASES = [
    ("entropy", "lammps_binary_garbage.lammpstrj"),
    ("entropy", "xyz_declares_1e9_atoms.xyz"),
    ("entropy", "gzip_bomb.extxyz.gz"),
    ("entropy", "cif_bad_spacegroup.cif"),
    ("entropy", "json_list.json"),
    ("entropy", "traj_atomic_number_999.traj"),
    ("entropy", "gro_cut_in_last_frame.gro"),
    ("dh", "vasp_counts_1e9.vasp"),
    ("dh", "pdb_cut_in_last_frame.pdb"),
    ("dh", "extxyz_tiny_cell_scaled.extxyz"),
    ("trajectory", "lammps_cut_in_last_frame.lammpstrj"),
    ("trajectory", "xyz_huge_span.xyz"),
    ("trajectory", "traj_bitflip_1.traj"),
    ("nucleation", "extxyz_tiny_cell_scaled.extxyz"),
    ("nucleation", "xyz_cut_in_last_frame.xyz"),
    ("entropy", "vasp_species_cu_au_one_count.vasp"),
    ("entropy", "cif_no_cell.cif"),
    ("trajectory", "cif_zero_cell.cif"),
    # a corrupt atom count mid-file: an error naming the frame, not a cut last frame
    ("entropy", "xyz_corrupt_count_mid_file.xyz"),
    ("trajectory", "lammps_count_bomb_mid_file.lammpstrj"),
    # the MD trajectories (with MDAnalysis): valid frames, then garbage / zeros / a bad header
    ("entropy", "xtc_random_tail_1000.xtc"),
    ("trajectory", "xtc_random_tail_1000.xtc"),
    ("entropy", "xtc_zero_tail.xtc"),
    ("trajectory", "trr_corrupt_frame_header.trr"),
    ("entropy", "trr_zero_tail.trr"),
    ("dh", "trr_garbage_tail_1000.trr"),
    ("trajectory", "dcd_garbage_tail_1000.dcd"),
]


@pytest.mark.timeout(300)
def test_cli_one_line_per_bad_file(corpus):
    by_name = {c.name: c for c in corpus}
    for command, name in _CLI_CASES:
        if name.endswith(tuple(MD_FORMATS.values())) and not MD:
            continue
        case = by_name[name]
        args = [command, case.path]
        if command in ("dh", "nucleation"):
            args += ["--reference", GOOD]
        start = time.perf_counter()
        proc = _cli(args)
        assert time.perf_counter() - start < 60, f"{name}: too slow"
        _check_run(proc, case)


@pytest.mark.timeout(300)
def test_cli_skip_bad_batch_names_every_bad_file(corpus):
    """All error cases in one ``entropy --skip-bad`` run: exit 0, the good file computed,
    one line naming each bad file (a cut last frame: one warning line)."""
    bad = [c for c in corpus if c.expected == "error"]
    proc = _cli(["entropy", GOOD, *[c.path for c in bad], "--skip-bad"], timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert f"skipped {len(bad)} bad file(s)" in proc.stderr, proc.stderr[-3000:]
    listed = [x.strip() for x in proc.stderr.splitlines() if x.startswith("  ")]
    for case in bad:
        hits = [x for x in listed if x.startswith(str(case.path) + ":")]
        assert len(hits) == 1, f"{case.name}: {hits}"
    assert "cu_solid_400K.extxyz" in proc.stdout


def test_negative_indices_count_complete_frames_only(corpus):
    from quests_core.io import count_frames, iter_frames

    by_name = {c.name: c for c in corpus}
    for name in ("xyz_cut_in_last_frame.xyz", "extxyz_cut_in_last_frame.extxyz",
                 "lammps_cut_in_last_frame.lammpstrj", "pdb_cut_in_last_frame.pdb"):
        path = by_name[name].path
        assert count_frames(path) == 2, name
        assert [f.frame for f in iter_frames(path, index="-2:")] == [0, 1]
        with pytest.warns(TruncatedFrameWarning, match=name):
            assert [f.frame for f in iter_frames(path, index="1:")] == [1]


def test_last_line_cut_mid_number_is_not_trusted(tmp_path, corpus):
    """A multi-frame xyz ending inside a line (no final newline) may end in a number cut
    short that still parses: that last frame is skipped with the warning; a single-frame
    file without a final newline (written by hand) is read."""
    from quests_core.io import count_frames, iter_frames

    good = next(c for c in corpus if c.name == "extxyz_good.extxyz").path.read_text()
    path = tmp_path / "cut.extxyz"
    path.write_text(good[:-6])
    with pytest.warns(TruncatedFrameWarning, match=r"cut.extxyz: frame 2: .*last line"):
        assert [f.frame for f in iter_frames(path)] == [0, 1]
    assert count_frames(path) == 2
    first = good.split("\n32\n")[0]
    path.write_text(first.rstrip("\n"))
    assert len(list(iter_frames(path))) == 1

"""quests_core.watch and ``quests-dashboard watch`` on a run that is being written.

A writer process (tests/test_follow.py) appends the frames of the bundled
failed run, flushing some frames in two parts cut mid-line; ``watch`` (run
through :func:`quests_core.cli.main`, once through the console script) must
report every frame with the numbers of the offline computation
(:func:`quests_core.trajectory.frame_statistics` on the complete file, same
reference, same seed) -- so it never read half a frame -- and flag the frame
where the same rule, applied offline, flags it (the issue allows two frames).
"""

from __future__ import annotations

import csv
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_follow import FAILED, start_writer

import quests_core as qc
from quests_core.cli import main as cli_main
from quests_core.errors import QuestsError
from quests_core.io import iter_frames
from quests_core.trajectory import frame_statistics
from quests_core.watch import (
    EXIT_EXTRAPOLATION,
    NoveltyRule,
    first_flag,
    load_reference,
    stop_line,
    write_stop_file,
)

ROOT = Path(__file__).resolve().parents[1]
SOLID = ROOT / "sample_data" / "cu_solid_400K.extxyz"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """The descriptor cache of the reference in the test's directory."""
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def main(argv: list[str]) -> int:
    """``quests-dashboard watch ARGV...`` in this process."""
    return cli_main(["watch", *argv])


@pytest.fixture(scope="module")
def offline():
    """Per-frame (n_atoms, mean dH, max dH, fraction novel, H) of the complete failed run."""
    ref = [f.atoms for f in iter_frames(SOLID)]
    xr = qc.descriptors(ref)
    rows = []
    for f in iter_frames(FAILED):
        stats, _ = frame_statistics(qc.descriptors([f.atoms]), xr, 0.015, seed=(0, f.frame))
        rows.append((stats.n_atoms, stats.mean_dH, stats.max_dH, stats.frac_novel, stats.H))
    return np.array(rows)


def offline_flag(frac: np.ndarray, threshold: float, patience: int) -> int | None:
    """The rule written out: first i with frac[i-patience+1 .. i] all > threshold."""
    for i in range(patience - 1, len(frac)):
        if np.all(frac[i - patience + 1 : i + 1] > threshold):
            return i
    return None


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fd:
        return list(csv.DictReader(fd))


def test_watch_follows_the_whole_run_with_the_offline_numbers(tmp_path, offline, capsys):
    """--keep-going: every frame reported, equal to offline; the flag where offline flags."""
    dst = tmp_path / "run.extxyz"
    out = tmp_path / "watch.csv"
    writer = start_writer(FAILED, dst, tmp_path, pace=0.05)
    try:
        status = main([str(dst), "-r", str(SOLID), "--from-start", "--keep-going",
                       "--timeout", "6", "--interval", "0.02", "-o", str(out)])
    finally:
        assert writer.wait(timeout=120) == 0
    assert status == EXIT_EXTRAPOLATION
    rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == list(range(35))
    got = np.array([[float(r[c]) for c in ("n_atoms", "mean_dH", "max_dH", "frac_novel", "H")]
                    for r in rows])
    assert np.array_equal(got[:, 0], offline[:, 0])
    np.testing.assert_allclose(got[:, 1:], offline[:, 1:], rtol=1e-12, atol=1e-12)
    flagged = [int(r["frame"]) for r in rows if r["flagged"] == "1"]
    expected = offline_flag(offline[:, 3], 0.05, 2)
    assert expected == 19  # the defaults: 5 % of the atoms novel twice in a row (T = 540 K)
    assert flagged[0] == expected
    lines = capsys.readouterr()
    assert "19     864" in lines.out and "EXTRAPOLATION" in lines.out
    assert "extrapolation at frame 19" in lines.err


def test_watch_stops_at_the_blow_up_and_acts(tmp_path, offline):
    """A rule that only the blow-up meets: stop file, command with the frame, exit 4."""
    dst = tmp_path / "run.extxyz"
    stop = tmp_path / "STOP"
    seen = tmp_path / "seen.txt"
    out = tmp_path / "watch.csv"
    command = (f"echo $QUESTS_FRAME $QUESTS_FRAC_NOVEL $QUESTS_STOP_FILE > "
               f"{shlex.quote(str(seen))}")
    writer = start_writer(FAILED, dst, tmp_path, pace=0.05)
    try:
        status = main([str(dst), "-r", str(SOLID), "--from-start", "--novel-fraction", "0.5",
                       "--patience", "1", "--timeout", "4", "--interval", "0.02",
                       "--stop-file", str(stop), "--on-extrapolation", command, "-o", str(out)])
    finally:
        writer.wait(timeout=120)
    expected = offline_flag(offline[:, 3], 0.5, 1)
    assert expected == 31  # T = 5.8e7 K (sample_data/README.md)
    assert status == EXIT_EXTRAPOLATION
    rows = read_csv(out)
    flagged = int(rows[-1]["frame"])
    assert rows[-1]["flagged"] == "1" and abs(flagged - expected) <= 2
    assert flagged == expected
    assert [int(r["frame"]) for r in rows] == list(range(flagged + 1))
    words = stop.read_text().split()
    assert stop.read_text().endswith("\n") and len(stop.read_text().splitlines()) == 1
    assert words[0] == "extrapolation" and f"frame={expected}" in words
    assert float(dict(w.split("=", 1) for w in words[1:])["frac_novel"]) == 1.0
    assert seen.read_text().split() == [str(expected), "1", str(stop)]


def test_rule_and_first_flag():
    rule = NoveltyRule(0.1, 2)
    assert [rule.update(f) for f in (0.2, 0.05, 0.2, 0.1, 0.3, 0.3, 0.3)] == [
        False, False, False, False, False, True, True]
    assert rule.run == 3
    rule.reset()
    assert rule.run == 0 and not rule.update(0.5)
    frac = [0.0, 0.06, 0.04, 0.06, 0.07, 0.5]
    for thr, pat in [(0.05, 1), (0.05, 2), (0.05, 3), (0.1, 1), (0.6, 1)]:
        assert first_flag(frac, thr, pat) == offline_flag(np.array(frac), thr, pat)
    assert first_flag(frac, 0.05, 2) == 4
    with pytest.raises(QuestsError, match="novel fraction"):
        NoveltyRule(1.0, 1)
    with pytest.raises(QuestsError, match="patience"):
        NoveltyRule(0.1, 0)


def test_reference_from_structures_equals_reference_from_files(tmp_path):
    from quests_core.settings import DEFAULTS

    atoms = [f.atoms for f in iter_frames(SOLID, index="0:2")]
    from_atoms = load_reference(atoms)
    from_file = load_reference(str(SOLID), index="0:2")
    assert from_atoms.h == from_file.h == DEFAULTS.bandwidth
    np.testing.assert_array_equal(from_atoms.x, from_file.x)
    auto = load_reference(str(SOLID), DEFAULTS.replace(bandwidth_rule="volume"), index="0:2")
    v = np.mean([a.get_volume() / len(a) for a in atoms])
    assert auto.h == pytest.approx(qc.bandwidth_from_volume(v), rel=1e-12)
    with pytest.raises(QuestsError, match=r"reference descriptors must be \(m, 63\)"):
        load_reference(np.zeros((3, 5)))


def test_stop_file_is_one_line_written_atomically(tmp_path):
    from quests_core.trajectory import FrameStats
    from quests_core.watch import FrameReport

    stats = FrameStats(n_atoms=10, H=1.5, H_stderr=0.0, H_rows=10, mean_dH=-2.0, max_dH=3.25,
                       frac_novel=0.3)
    report = FrameReport(7, stats, np.zeros(10), 2, True, 0.1)
    line = stop_line(report, "run dir/a.extxyz", NoveltyRule(0.05, 2))
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.startswith("extrapolation frame=7 frac_novel=0.3 mean_dH=-2 max_dH=3.25 H=1.5 "
                           "n_atoms=10 novel_fraction=0.05 patience=2 file='run dir/a.extxyz' ")
    path = write_stop_file(tmp_path / "STOP", line)
    assert path.read_text() == line
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["STOP"]  # no temporary left
    with pytest.raises(QuestsError, match="cannot write the stop file"):
        write_stop_file(tmp_path / "missing" / "STOP", line)


def test_bad_input_and_usage_statuses(tmp_path, capsys):
    run = tmp_path / "run.extxyz"
    run.write_bytes(FAILED.read_bytes()[:1000])
    assert main([str(run), "-r", str(tmp_path / "nope.extxyz"), "--timeout", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nope.extxyz: file not found" in err[-1]
    assert main([str(tmp_path / "a.traj"), "-r", str(SOLID)]) == 1
    assert "cannot be followed" in capsys.readouterr().err
    assert main([str(run), "-r", str(SOLID), "-o", str(tmp_path / "x.json")]) == 1
    assert main([str(run)]) == 2  # --reference is required
    assert main([str(run), "-r", str(SOLID), "--novel-fraction", "1.5"]) == 2
    assert main([str(run), "-r", str(SOLID), "--index", "0"]) == 2  # not an option of watch
    assert main(["--help"]) == 0
    assert "4    extrapolation detected" in capsys.readouterr().out


def test_timeout_without_extrapolation_exits_0(tmp_path, capsys):
    run = tmp_path / "run.extxyz"
    frames = list(iter_frames(FAILED, index="1:4"))
    from ase.io import write

    write(run, [f.atoms for f in frames], format="extxyz")
    status = main([str(run), "-r", str(SOLID), "--from-start", "--timeout", "0.5",
                   "--interval", "0.05", "--no-cache"])
    assert status == 0
    captured = capsys.readouterr()
    assert len([ln for ln in captured.out.splitlines() if ln.strip()]) == 1 + 3
    assert "no growth for 0.5 s" in captured.err and "no extrapolation" in captured.err


def _lammps_dump(frames) -> str:
    """A LAMMPS text dump (id element x y z) of orthogonal periodic frames."""
    out = []
    for i, atoms in enumerate(frames):
        lx, ly, lz = (float(v) for v in np.diag(atoms.cell.array))
        out.append(f"ITEM: TIMESTEP\n{8 * i}\nITEM: NUMBER OF ATOMS\n{len(atoms)}\n"
                   f"ITEM: BOX BOUNDS pp pp pp\n0 {lx!r}\n0 {ly!r}\n0 {lz!r}\n"
                   "ITEM: ATOMS id element x y z\n")
        out.extend(f"{j + 1} {s} {x!r} {y!r} {z!r}\n" for j, (s, (x, y, z)) in enumerate(
            zip(atoms.get_chemical_symbols(), atoms.positions.tolist(), strict=True)))
    return "".join(out)


def test_watch_a_lammps_dump(tmp_path, offline, capsys):
    frames = [f.atoms for f in iter_frames(FAILED, index="29:32")]
    assert all(np.allclose(a.cell.array, np.diag(np.diag(a.cell.array))) for a in frames)
    run = tmp_path / "run.lammpstrj"
    run.write_text(_lammps_dump(frames))
    out = tmp_path / "w.csv"
    status = main([str(run), "-r", str(SOLID), "--from-start", "--novel-fraction", "0.5",
                   "--patience", "1", "--timeout", "1", "--interval", "0.05", "-o", str(out)])
    assert status == EXIT_EXTRAPOLATION
    rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == [0, 1, 2] and rows[-1]["flagged"] == "1"
    got = np.array([[float(r[c]) for c in ("mean_dH", "max_dH", "frac_novel")] for r in rows])
    np.testing.assert_allclose(got, offline[29:32, 1:4], rtol=1e-9, atol=1e-9)


def _finished_run(path: Path, index: str) -> None:
    """Frames ``index`` of the failed run, written whole (renumbered from 0)."""
    from ase.io import write

    write(path, [f.atoms for f in iter_frames(FAILED, index=index)], format="extxyz")


def test_console_script_exits_4_and_writes_the_stop_file(tmp_path, offline):
    """``quests-dashboard watch`` as a job script runs it: status 4 and the stop file."""
    exe = Path(sys.executable).parent / "quests-dashboard"
    if not exe.exists():
        pytest.skip("quests-dashboard console script not installed in this environment")
    run = tmp_path / "run.extxyz"
    _finished_run(run, "30:32")  # frame 1 is the blow-up (frame 31 of the run)
    stop = tmp_path / "STOP"
    proc = subprocess.run(
        [str(exe), "watch", str(run), "-r", str(SOLID), "--from-start", "--novel-fraction",
         "0.5", "--patience", "1", "--timeout", "5", "--interval", "0.05",
         "--stop-file", str(stop), "--no-progress"],
        capture_output=True, text=True, timeout=300,
        env={"QUESTS_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == EXIT_EXTRAPOLATION, proc.stderr
    words = stop.read_text().split()
    assert words[0] == "extrapolation" and "frame=1" in words
    assert f"file={run}" in words
    frac = float(dict(w.split("=", 1) for w in words[1:])["frac_novel"])
    assert frac == offline[31, 3] == 1.0
    rows = [ln.split() for ln in proc.stdout.splitlines()[1:]]
    assert [int(r[0]) for r in rows] == [0, 1] and rows[1][-1] == "EXTRAPOLATION"
    assert "extrapolation at frame 1" in proc.stderr


def test_descriptor_file_reference_equals_structure_reference(tmp_path, offline, capsys):
    """--reference accepts saved descriptors (with their layout), as ``dh`` does."""
    from quests_core.descriptor_files import save_descriptors

    run = tmp_path / "run.extxyz"
    _finished_run(run, "17:20")
    xr = qc.descriptors([f.atoms for f in iter_frames(SOLID)])
    npz = save_descriptors(tmp_path / "ref.npz", xr, k=32, cutoff=5.0, source=str(SOLID))
    results = []
    for ref in (SOLID, npz):
        out = tmp_path / f"{Path(ref).stem}.csv"
        status = main([str(run), "-r", str(ref), "--from-start", "--timeout", "0.3",
                       "--interval", "0.05", "-o", str(out)])
        assert status == EXIT_EXTRAPOLATION  # frames 18 and 19 of the run: flagged at 19
        rows = read_csv(out)
        assert [r["flagged"] for r in rows] == ["0", "0", "1"]
        results.append([[float(r[c]) for c in ("mean_dH", "max_dH", "frac_novel", "H")]
                        for r in rows])
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_allclose(results[0], offline[17:20, 1:], rtol=1e-12, atol=1e-12)
    assert "ref.npz (" in capsys.readouterr().err
    # a descriptor file of other settings, or --bandwidth auto without structures: one line
    assert main([str(run), "-r", str(npz), "-k", "16", "--timeout", "0.1"]) == 1
    assert "ref.npz" in capsys.readouterr().err
    assert main([str(run), "-r", str(npz), "--bandwidth", "auto", "--timeout", "0.1"]) == 1
    assert "--bandwidth auto needs the reference structures" in capsys.readouterr().err


def test_bandwidth_auto_is_the_volume_rule_of_the_reference(tmp_path, capsys):
    run = tmp_path / "run.extxyz"
    _finished_run(run, "0:1")
    status = main([str(run), "-r", str(SOLID), "--bandwidth", "auto", "--from-start",
                   "--timeout", "0.2", "--interval", "0.05"])
    assert status == 0
    atoms = [f.atoms for f in iter_frames(SOLID)]
    v = sum(a.get_volume() for a in atoms) / sum(len(a) for a in atoms)
    h = qc.bandwidth_from_volume(v)
    assert f"h = {h:.4g} 1/Å" in capsys.readouterr().err

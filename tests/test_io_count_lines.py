"""Corrupt atom-count lines in the middle of a finished file (quests_core.io splitters).

A count line such as ``999999999999`` (or ``100000`` in a frame of 32 atoms) in
frame 28 of a 35-frame file used to make the (ext)xyz splitter swallow the rest
of the file as one incomplete frame, which the truncated-last-frame rule then
skipped with a warning, silently dropping the 6 valid frames after it. Now the
frame that holds the start of a next frame (an xyz count line, a dump's
``ITEM: TIMESTEP``) is an error naming it, as the follower's framer does, and a
count above 10^9 is an error; a genuinely cut last frame still warns.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read, write

from quests_core.errors import QuestsError
from quests_core.io import (
    TruncatedFrameWarning,
    count_frames,
    iter_frames,
    parse_frame_text,
    read_structures,
)

N_FRAMES = 35
BAD = 28  # the corrupt frame (0-based, as the messages number frames)


@pytest.fixture(scope="module")
def frames():
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)  # 32 atoms
    out = []
    for i in range(N_FRAMES):
        atoms = base.copy()
        atoms.rattle(0.05, seed=i)
        out.append(atoms)
    return out


def _xyz_lines(path, frames, fmt="extxyz"):
    write(path, frames, format=fmt)
    return path.read_text().splitlines(keepends=True)


def _count_line_index(frames, frame):
    return sum(len(a) + 2 for a in frames[:frame])


def _with_count(tmp_path, frames, count, fmt="extxyz", frame=BAD, name="run.xyz"):
    path = tmp_path / name
    lines = _xyz_lines(path, frames, fmt)
    lines[_count_line_index(frames, frame)] = f"{count}\n"
    path.write_text("".join(lines))
    return path


def _dump(frames, count=None, frame=BAD):
    lines = []
    for step, atoms in enumerate(frames):
        n = count if (count is not None and step == frame) else len(atoms)
        lines += ["ITEM: TIMESTEP", str(10 * step), "ITEM: NUMBER OF ATOMS", str(n),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {float(atoms.cell[a, a])!r}" for a in range(3)]
        lines.append("ITEM: ATOMS id type element x y z")
        lines += [f"{i + 1} 1 Cu {x!r} {y!r} {z!r}"
                  for i, (x, y, z) in enumerate(atoms.positions.tolist())]
    return "\n".join(lines) + "\n"


def _next_xyz(path, declared, found=32, frame=BAD):
    return (f"{path}: frame {frame}: header declares {declared} atoms, found {found} atom "
            f"lines and then '32', the count line of a next frame (a corrupt count or a "
            "frame cut short)")


def _next_dump(path, declared, found=32, frame=BAD):
    return (f"{path}: frame {frame}: truncated or corrupt LAMMPS dump: header declares "
            f"{declared} atoms, found {found} atom lines and then 'ITEM: TIMESTEP', the "
            "start of a next frame (a corrupt count or a frame cut short)")


def _error(fn) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedFrameWarning)  # never a cut last frame
        with pytest.raises(QuestsError) as info:
            fn()
    return str(info.value)


# ------------------------------------------------------- the bug: a count mid-file


@pytest.mark.parametrize("fmt", ["extxyz", "xyz"])
@pytest.mark.parametrize("count", [999999999999, 100000, 33, 40])
def test_corrupt_count_mid_file_is_an_error_naming_the_frame(tmp_path, frames, fmt, count):
    """Too large by far (more than the file holds, above 10^9) or by a little (the frame
    takes the next count line as an atom line): the same one-line error, on every path."""
    path = _with_count(tmp_path, frames, count, fmt)
    expected = _next_xyz(path, count)
    got = []

    def read_all():
        for f in iter_frames(path):
            got.append(f.frame)

    assert _error(read_all) == expected
    assert got == list(range(BAD))  # the frames before it were read, in order
    # count_frames and the negative indices (which count first) give the same error
    assert _error(lambda: count_frames(path)) == expected
    assert _error(lambda: list(iter_frames(path, index=-1))) == expected
    assert _error(lambda: list(iter_frames(path, index="-3:"))) == expected
    # a selection that passes over the frame without reading it still reports it
    assert _error(lambda: list(iter_frames(path, index="::2"))) == expected
    assert _error(lambda: list(iter_frames(path, index=BAD + 2))) == expected
    # a selection that ends before it is read
    assert [f.frame for f in iter_frames(path, index=f":{BAD}")] == list(range(BAD))


def test_the_message_of_the_report(tmp_path, frames):
    """The example of the bug report, word for word (864-atom frames)."""
    big = [a * (3, 3, 3) for a in frames[:31]]  # 864 atoms
    path = _with_count(tmp_path, big, 999999999999)
    assert _error(lambda: read_structures(path)) == (
        f"{path}: frame 28: header declares 999999999999 atoms, found 864 atom lines and "
        "then '864', the count line of a next frame (a corrupt count or a frame cut short)"
    )


def test_corrupt_count_in_the_first_frame(tmp_path, frames):
    path = _with_count(tmp_path, frames[:4], 100000, frame=0)
    assert _error(lambda: read_structures(path)) == _next_xyz(path, 100000, frame=0)


@pytest.mark.parametrize("count", [999999999999, 100000, 40])
def test_lammps_count_mid_file_is_an_error_naming_the_frame(tmp_path, frames, count):
    path = tmp_path / "run.lammpstrj"
    path.write_text(_dump(frames, count))
    expected = _next_dump(path, count)
    assert _error(lambda: read_structures(path)) == expected
    assert _error(lambda: count_frames(path)) == expected
    assert _error(lambda: list(iter_frames(path, index=-1))) == expected
    assert _error(lambda: list(iter_frames(path, index="::2"))) == expected
    assert len(read_structures(path, index=f":{BAD}")) == BAD


def test_parse_frame_text_refuses_a_frame_holding_a_next_count_line(frames, tmp_path):
    """The single-frame parser (used by the follower) gives the splitter's message."""
    path = tmp_path / "two.xyz"
    lines = _xyz_lines(path, frames[:2])
    lines[0] = "40\n"  # the frame's 40 "atom lines": its 32, then frame 1's count line, ...
    data = "".join(lines[: 2 + 40]).encode()
    with pytest.raises(QuestsError) as info:
        parse_frame_text(data, "extxyz", source="run.xyz", frame=7)
    assert str(info.value) == _next_xyz("run.xyz", 40, frame=7)


def test_follower_and_reader_agree_on_the_message(tmp_path, frames):
    """The live follower's framer and the offline splitter name the same frame the same way."""
    from quests_core.follow import _Framer

    path = _with_count(tmp_path, frames, 100000)
    framer = _Framer(str(path), "extxyz")
    framer.buf.extend(path.read_bytes())
    with pytest.raises(QuestsError) as live:
        while (cut := framer.next_frame()) is not None:
            framer.consume(cut)
    assert str(live.value) == _error(lambda: read_structures(path)) == _next_xyz(path, 100000)


# ------------------------------------------------------------- absurd counts


@pytest.mark.parametrize("fmt", ["extxyz", "lammps"])
def test_count_above_1e9_in_the_last_frame_is_an_error(tmp_path, frames, fmt):
    """Nothing follows it, but no frame holds 10^12 atoms: not a file being written."""
    last = N_FRAMES - 1
    if fmt == "lammps":
        path = tmp_path / "run.lammpstrj"
        path.write_text(_dump(frames, 999999999999, frame=last))
    else:
        path = _with_count(tmp_path, frames, 999999999999, frame=last)
    expected = (f"{path}: frame {last}: header declares 999999999999 atoms, more than the "
                "1,000,000,000 a frame may hold (found 32 atom lines before the end of the "
                "file): a corrupt atom count")
    assert _error(lambda: read_structures(path)) == expected
    assert _error(lambda: count_frames(path)) == expected


def test_count_above_1e9_scans_a_bounded_number_of_lines(tmp_path, frames, monkeypatch):
    import quests_core.io_xyz as qio

    monkeypatch.setattr(qio, "_ABSURD_SCAN_LINES", 10)
    path = _with_count(tmp_path, frames, 999999999999)
    assert _error(lambda: read_structures(path)) == (
        f"{path}: frame {BAD}: header declares 999999999999 atoms, more than the "
        "1,000,000,000 a frame may hold (no next frame in the 10 lines after it): a corrupt "
        "atom count")


def test_a_hopeless_count_is_scanned_not_kept(tmp_path, frames):
    """A count the rest of the file cannot hold (10^8 atoms, 3 MB left) is looked through
    line by line for a next frame, never held in memory: a cut last frame, in bounded
    memory."""
    path = tmp_path / "big.xyz"
    head = "".join(_xyz_lines(path, frames[:2]))
    atom = "Cu 0.123456789 1.234567890 2.345678901\n"
    path.write_text(head + "100000000\ncomment\n" + atom * 80_000)
    tracemalloc.start()
    try:
        with pytest.warns(TruncatedFrameWarning, match=r"big.xyz: frame 2: the file ends "
                          r"inside it \(header declares 100000000 atoms, found 80000\)"):
            assert [f.frame for f in iter_frames(path)] == [0, 1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak  # the 3 MB tail was not kept


# -------------------------------------------------- what must not change


@pytest.mark.parametrize("fmt", ["extxyz", "xyz"])
@pytest.mark.parametrize("keep", ["count line only", "comment", "half", "all but one"])
def test_genuinely_cut_last_frame_still_warns(tmp_path, frames, fmt, keep):
    path = tmp_path / "cut.xyz"
    lines = _xyz_lines(path, frames, fmt)
    start = _count_line_index(frames, N_FRAMES - 1)
    end = {"count line only": start + 1, "comment": start + 2, "half": start + 18,
           "all but one": len(lines) - 1}[keep]
    path.write_text("".join(lines[:end]))
    skipped = []
    with pytest.warns(TruncatedFrameWarning, match=rf"cut.xyz: frame {N_FRAMES - 1}: the "
                      r"file ends inside it \(header declares 32 atoms"):
        got = [f.frame for f in iter_frames(path, skipped=skipped)]
    assert got == list(range(N_FRAMES - 1))
    assert [s[1] for s in skipped] == [N_FRAMES - 1]
    assert count_frames(path) == N_FRAMES - 1
    assert [f.frame for f in iter_frames(path, index=-1)] == [N_FRAMES - 2]


def test_genuinely_cut_last_lammps_frame_still_warns(tmp_path, frames):
    path = tmp_path / "cut.lammpstrj"
    path.write_text("".join(_dump(frames).splitlines(keepends=True)[:-7]))
    with pytest.warns(TruncatedFrameWarning, match=rf"frame {N_FRAMES - 1}: .*declares 32 "
                      r"atoms, found 25"):
        assert len(read_structures(path)) == N_FRAMES - 1
    assert count_frames(path) == N_FRAMES - 1
    assert [f.frame for f in iter_frames(path, index=-1)] == [N_FRAMES - 2]


@pytest.mark.parametrize("comment", ["ase", "step number"])
@pytest.mark.parametrize("fmt", ["extxyz", "xyz"])
def test_valid_many_frame_file_is_unaffected(tmp_path, frames, fmt, comment):
    """Frame counts equal ase.io.read's, also when every comment line is a bare integer
    (a step number: a comment line is never taken for a count line) and frames differ
    in size."""
    sizes = [a[: 1 + (7 * i) % len(a)] for i, a in enumerate(frames)]
    path = tmp_path / f"many.{fmt}"
    write(path, sizes, format=fmt)
    if comment == "step number":
        lines = path.read_text().splitlines(keepends=True)
        i = step = 0
        while i < len(lines):
            lines[i + 1] = f"{1000 * step}\n"
            i += int(lines[i]) + 2
            step += 1
        path.write_text("".join(lines))
    reference = read(path, index=":", format=fmt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncatedFrameWarning)
        got = read_structures(path, format=fmt)
    assert len(got) == len(reference) == N_FRAMES
    assert count_frames(path, format=fmt) == N_FRAMES
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_allclose(a.positions, b.positions)
    assert [f.frame for f in iter_frames(path, index="-2:", format=fmt)] == [33, 34]


def test_valid_dump_is_unaffected(tmp_path, frames):
    path = tmp_path / "many.lammpstrj"
    path.write_text(_dump(frames))
    reference = read(path, index=":", format="lammps-dump-text")
    assert len(read_structures(path)) == len(reference) == count_frames(path) == N_FRAMES


def test_lines_too_short_for_the_count_are_an_error(tmp_path, frames):
    """A count the bytes after it cannot hold whose lines are all there (blank lines):
    not a frame being written, and never silently passed over."""
    path = tmp_path / "blank.xyz"
    head = "".join(_xyz_lines(path, frames[:2]))
    path.write_text(head + "100\ncomment\n" + "\n" * 150)
    expected = (f"{path}: frame 2: header declares 100 atoms, more than the 158 bytes after "
                "it can hold (at least 7 per atom line): a corrupt frame")
    assert _error(lambda: read_structures(path)) == expected
    assert _error(lambda: count_frames(path)) == expected

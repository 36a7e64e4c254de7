"""quests_core.follow: frames of a file that is still being written.

A writer process appends the frames of the bundled failed run at a steady
pace, flushing some frames in two parts cut in the middle of a line (the count
line included); the follower must yield every frame once, complete, with the
positions, atom counts and byte offsets of the offline reader. The framer is
also fed every prefix of small files byte by byte, and truncated / replaced /
rewritten files restart the follow with one message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from quests_core.errors import QuestsError
from quests_core.follow import Follower, _Framer, follow_format
from quests_core.io import iter_frames

ROOT = Path(__file__).resolve().parents[1]
FAILED = ROOT / "sample_data" / "cu_failed_simulation.extxyz"
LABELLED = ROOT / "sample_data" / "cu_dataset_labelled.extxyz"

# The writer: appends the frames of SRC to DST, one every PACE seconds; every
# third frame is flushed in two parts cut in the middle of a line (frame 1 of
# every five right after the first byte of its count line), with a sleep between.
WRITER = r'''
import os, sys, time
import numpy as np
src, dst, pace, fmt = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
data = open(src, "rb").read()
starts = []
if fmt == "lammps":
    i = data.find(b"ITEM: TIMESTEP")
    while i >= 0:
        starts.append(i)
        i = data.find(b"ITEM: TIMESTEP", i + 1)
else:
    pos = 0
    while pos < len(data):
        starts.append(pos)
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl].split()[0])
        for _ in range(n + 2):
            pos = data.index(b"\n", pos) + 1
bounds = list(zip(starts, starts[1:] + [len(data)]))
rng = np.random.default_rng(7)
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for k, (a, b) in enumerate(bounds):
    chunk = data[a:b]
    if k % 5 == 1:
        cut = 1
    elif k % 3 == 0:
        cut = int(rng.integers(1, len(chunk) - 1))
        while chunk[cut - 1:cut] == b"\n" or chunk[cut:cut + 1] == b"\n":
            cut += 1
    else:
        cut = None
    if cut is None:
        os.write(fd, chunk)
    else:
        os.write(fd, chunk[:cut])
        os.fsync(fd)
        time.sleep(pace)
        os.write(fd, chunk[cut:])
    os.fsync(fd)
    time.sleep(pace)
os.close(fd)
'''


def start_writer(src: Path, dst: Path, tmp_path: Path, pace: float = 0.05,
                 fmt: str = "xyz") -> subprocess.Popen:
    """Start the writer process appending the frames of ``src`` to ``dst``."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(src), str(dst), str(pace), fmt])


def frame_offsets(path: Path) -> list[int]:
    """Byte offset of every frame of a complete extxyz file."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        n = int(data[pos : data.index(b"\n", pos)].split()[0])
        for _ in range(n + 2):
            pos = data.index(b"\n", pos) + 1
    return out


def test_follows_a_writer_and_never_reads_half_a_frame(tmp_path):
    dst = tmp_path / "run.extxyz"
    writer = start_writer(FAILED, dst, tmp_path)
    messages: list[str] = []
    try:
        got = [(f.frame, f.offset, f.end, f.atoms.positions.copy(), f.atoms.numbers.copy(),
                f.atoms.info.get("temperature"))
               for f in Follower(dst, interval=0.02, timeout=5.0, notify=messages.append)]
    finally:
        assert writer.wait(timeout=60) == 0
    offline = list(iter_frames(FAILED))
    offsets = frame_offsets(FAILED)
    assert len(got) == len(offline) == 35
    for (frame, offset, end, pos, numbers, temp), ref in zip(got, offline, strict=True):
        assert frame == ref.frame
        assert offset == offsets[frame]
        assert end == (offsets[frame + 1] if frame + 1 < len(offsets) else FAILED.stat().st_size)
        assert np.array_equal(pos, ref.atoms.positions)
        assert np.array_equal(numbers, ref.atoms.numbers)
        assert temp == ref.atoms.info["temperature"]
    assert dst.read_bytes() == FAILED.read_bytes()
    assert not any("incomplete" in m for m in messages)


XYZ = (b"2\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\n"
       b"Cu 0.0 0.0 0.0\nCu 1.5 1.5 1.5\n"
       b"\n"
       b"3\n\n"
       b"Cu 0.1 0.0 0.0\nCu 1.6 1.5 1.5\nCu 3.0 3.0 3.0\n")

DUMP = (b"ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n"
        b"0 5\n0 5\n0 5\nITEM: ATOMS id type x y z\n1 1 0.0 0.0 0.0\n2 1 1.5 1.5 1.5\n"
        b"ITEM: TIMESTEP\n10\nITEM: NUMBER OF ATOMS\n3\nITEM: BOX BOUNDS pp pp pp\n"
        b"0 5\n0 5\n0 5\nITEM: ATOMS id type x y z\n1 1 0.1 0.0 0.0\n2 1 1.6 1.5 1.5\n"
        b"3 1 3.0 3.0 3.0\n")


@pytest.mark.parametrize(("fmt", "data", "ends"), [
    ("extxyz", XYZ, [len(XYZ.split(b"\n\n3")[0]) + 1, len(XYZ)]),
    ("lammps-dump-text", DUMP, [DUMP.index(b"ITEM: TIMESTEP\n10"), len(DUMP)]),
])
def test_framer_cuts_frames_only_when_every_line_is_complete(fmt, data, ends):
    """Every prefix of the file: exactly the frames whose last newline is in it."""
    for k in range(len(data) + 1):
        framer = _Framer("f", fmt)
        framer.buf += data[:k]
        cuts, base = [], 0
        while (cut := framer.next_frame()) is not None:
            cuts.append(base + cut.end)
            base += cut.end
            framer.consume(cut)
        assert cuts == [e for e in ends if e <= k], k
        # the rest arrives: the remaining frames follow, none twice
        framer.buf += data[k:]
        while (cut := framer.next_frame()) is not None:
            cuts.append(base + cut.end)
            base += cut.end
            framer.consume(cut)
        assert cuts == ends


def _write_later(path: Path, pieces: list[tuple[float, bytes, str]]) -> threading.Thread:
    """Write ``pieces`` (delay, bytes, mode 'ab'/'wb'/'replace'/'patch') from a thread."""

    def work():
        for delay, data, mode in pieces:
            time.sleep(delay)
            if mode == "replace":
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
            elif mode == "patch":  # overwrite the last 20 bytes in place, then append
                with open(path, "r+b") as fd:
                    fd.seek(-20, os.SEEK_END)
                    fd.write(data)
            else:
                with open(path, mode) as fd:
                    fd.write(data)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _two_frames() -> tuple[bytes, bytes]:
    data = FAILED.read_bytes()
    offsets = frame_offsets(FAILED)
    return data[: offsets[2]], data[offsets[2] : offsets[3]]


@pytest.mark.parametrize(("mode", "word"), [("wb", ("truncated", "rewritten")),
                                            ("replace", ("replaced",))])
def test_truncated_or_replaced_file_restarts_with_a_message(tmp_path, mode, word):
    path = tmp_path / "run.extxyz"
    first, _ = _two_frames()
    path.write_bytes(first)
    other = LABELLED.read_bytes()
    other = other[: frame_offsets(LABELLED)[1]]  # one frame of another run
    writer = _write_later(path, [(0.6, other, mode)])
    messages: list[str] = []
    got = [(f.frame, f.restarts, len(f.atoms))
           for f in Follower(path, interval=0.05, timeout=2.0, notify=messages.append)]
    writer.join()
    n_other = next(iter_frames(LABELLED, index=0)).atoms.get_global_number_of_atoms()
    assert got == [(0, 0, 864), (1, 0, 864), (0, 1, n_other)]
    restarts = [m for m in messages if "following it again from the start" in m]
    assert len(restarts) == 1 and any(w in restarts[0] for w in word), messages


def test_in_place_rewrite_restarts(tmp_path):
    """Bytes already read change while the file only grows: only the anchor sees it."""
    path = tmp_path / "run.extxyz"
    first, third = _two_frames()
    path.write_bytes(first)
    tail = first[-20:].replace(b"0", b"1")
    assert tail != first[-20:]
    writer = _write_later(path, [(0.6, tail + third, "patch")])
    messages: list[str] = []
    got = [(f.frame, f.restarts) for f in Follower(path, interval=0.05, timeout=2.0,
                                                   notify=messages.append)]
    writer.join()
    assert got == [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)]
    assert len(messages) == 1 and "was rewritten" in messages[0], messages


def test_start_at_the_end_yields_only_new_frames(tmp_path):
    path = tmp_path / "run.extxyz"
    first, third = _two_frames()
    half = len(third) // 2
    path.write_bytes(first + third[:half])  # frame 2 is being written
    writer = _write_later(path, [(0.4, third[half:], "ab"), (0.2, third, "ab")])
    got = [(f.frame, f.offset) for f in Follower(path, interval=0.05, timeout=1.5,
                                                 from_start=False)]
    writer.join()
    assert got == [(2, len(first)), (3, len(first) + len(third))]


def test_timeout_names_the_incomplete_last_frame(tmp_path):
    path = tmp_path / "run.extxyz"
    first, third = _two_frames()
    path.write_bytes(first + third[: len(third) // 2 + 7])
    messages: list[str] = []
    follower = Follower(path, interval=0.05, timeout=0.3, notify=messages.append)
    t0 = time.monotonic()
    assert [f.frame for f in follower] == [0, 1]
    assert 0.3 <= time.monotonic() - t0 < 10
    assert follower.ended == "timeout"
    pending = [m for m in messages if "incomplete" in m]
    assert len(pending) == 1 and "frame 2" in pending[0] and "864 atoms" in pending[0]


def test_waits_for_the_file_and_stops_when_told(tmp_path):
    path = tmp_path / "later.extxyz"
    first, _ = _two_frames()
    writer = _write_later(path, [(0.3, first, "ab")])
    stop = threading.Event()
    messages: list[str] = []
    frames = []
    for item in Follower(path, interval=0.05, stop=stop, notify=messages.append):
        frames.append(item.frame)
        if item.frame == 1:
            stop.set()
    writer.join()
    assert frames == [0, 1]
    assert any("waiting for the file" in m for m in messages)


def test_lammps_dump_frames_equal_the_offline_reader(tmp_path):
    src = tmp_path / "src.lammpstrj"
    dump = b"".join(
        DUMP.replace(b"ITEM: TIMESTEP\n0\n", f"ITEM: TIMESTEP\n{100 * i}\n".encode(), 1)
        for i in range(4))
    src.write_bytes(dump)
    dst = tmp_path / "run.lammpstrj"
    writer = start_writer(src, dst, tmp_path, pace=0.03, fmt="lammps")
    try:
        got = [f.atoms for f in Follower(dst, interval=0.02, timeout=2.0, type_map="Cu")]
    finally:
        assert writer.wait(timeout=60) == 0
    offline = [f.atoms for f in iter_frames(src, type_map="Cu")]
    assert len(got) == len(offline) == 8
    for a, b in zip(got, offline, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert set(a.get_chemical_symbols()) == {"Cu"}


def test_corrupt_frames_give_the_readers_one_line_errors(tmp_path):
    bad = tmp_path / "bad.extxyz"
    first, _ = _two_frames()
    bad.write_bytes(first + b"eight hundred\ncomment\n")
    with pytest.raises(QuestsError, match=r"bad.extxyz: frame 2: expected the number of atoms, "
                       r"found 'eight hundred' \(frame 1 has more atom lines"):
        list(Follower(bad, interval=0.05, timeout=0.5))
    notdump = tmp_path / "x.lammpstrj"
    notdump.write_bytes(b"hello\n")
    with pytest.raises(QuestsError, match=r"not a LAMMPS text dump \(no 'ITEM: TIMESTEP' header; "
                       r"line 1 is 'hello'\)"):
        list(Follower(notdump, interval=0.05, timeout=0.5))
    # a complete frame that ASE cannot parse: the io reader's message
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_bytes(b"1\n\nCu zero 0 0\n")
    with pytest.raises(QuestsError, match=r"garbage.extxyz: frame 0: "):
        list(Follower(garbage, interval=0.05, timeout=0.5))


def test_formats_that_cannot_be_followed(tmp_path):
    assert follow_format(tmp_path / "a.extxyz") == "extxyz"
    assert follow_format(tmp_path / "a.lammpstrj") == "lammps-dump-text"
    assert follow_format(tmp_path / "a.dat", "xyz") == "xyz"
    with pytest.raises(QuestsError, match="cannot be followed while it is written"):
        follow_format(tmp_path / "a.traj")
    with pytest.raises(QuestsError, match="compressed file cannot be followed"):
        follow_format(tmp_path / "a.extxyz.gz")
    with pytest.raises(QuestsError, match="does not exist yet"):
        follow_format(tmp_path / "noext")


def test_parse_frame_text_equals_the_offline_reader(tmp_path):
    """io.parse_frame_text (the follower's parser) on one frame's bytes = iter_frames."""
    from quests_core.io import parse_frame_text

    data, offsets = FAILED.read_bytes(), frame_offsets(FAILED)
    offline = [f.atoms for f in iter_frames(FAILED, index="0:3")]
    for i in range(3):
        text = b"\n" + data[offsets[i] : offsets[i + 1]]
        atoms = parse_frame_text(text, "extxyz", source="x.extxyz", frame=i)
        assert np.array_equal(atoms.positions, offline[i].positions)
        assert np.array_equal(atoms.cell.array, offline[i].cell.array)
    with pytest.raises(QuestsError, match=r"^x.extxyz: frame 3: expected the number of atoms, "
                       r"found 'abc' \(frame 2 has more"):
        parse_frame_text(b"abc\n", "extxyz", source="x.extxyz", frame=3)
    dump = (b"ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\nmany\nITEM: BOX BOUNDS pp pp pp\n"
            b"0 1\n0 1\n0 1\nITEM: ATOMS id type x y z\n")
    with pytest.raises(QuestsError, match=r"^d.dump: frame 4: bad 'NUMBER OF ATOMS' value 'many'"):
        parse_frame_text(dump, "lammps-dump-text", source="d.dump", frame=4)
    short = dump.replace(b"many", b"2") + b"1 1 0 0 0\n"
    with pytest.raises(QuestsError, match=r"header declares 2 atoms, found 1"):
        parse_frame_text(short, "lammps-dump-text", source="d.dump", frame=0, type_map="Cu")
    with pytest.raises(QuestsError, match="cannot parse a single frame of the 'traj' format"):
        parse_frame_text(b"", "traj", source="a.traj", frame=0)
    # the follower hands an unreadable dump count to the same parser
    bad = tmp_path / "bad.lammpstrj"
    bad.write_bytes(dump)
    with pytest.raises(QuestsError, match=r"bad.lammpstrj: frame 0: bad 'NUMBER OF ATOMS'"):
        list(Follower(bad, interval=0.05, timeout=0.5))

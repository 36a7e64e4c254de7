"""Binary MD trajectories that end before their file does, and hostile DCD headers.

Issue "Nothing lost and nothing silent": an XTC with 1,000 random bytes appended
killed the process (SIGSEGV in MDAnalysis's C offset scan, run in the main
process); TRR frames after a corrupt frame header or a zero-filled tail were
dropped without a word. Now the XTC/TRR frame offsets are found in Python from
each frame's header, a DCD's header and record markers are checked in Python,
and valid frames followed by anything that is not a frame are read with one
warning naming the frame and byte offset where reading stopped and how many
frames were read.

Every read of a damaged file runs in a child process, so a regression that
crashes the reader fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

pytest.importorskip("MDAnalysis")

from quests_core.errors import QuestsError  # noqa: E402
from quests_core.io import TruncatedFrameWarning, iter_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_files import _write_md  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_FRAMES = 10
#: bytes of one TRR frame of the 32-atom cell written below
TRR_FRAME = 84 + 36 + 32 * 12  # header, box, positions (single precision)


def _frames(n: int = N_FRAMES, reps: int = 2):
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (reps, reps, reps)
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(0.05, seed=i)
        out.append(atoms)
    return out


def _write(path: Path, frames) -> bytes:
    """``frames`` with MDAnalysis's writer, a PDB topology of the same name next to it
    (the hostile corpus's writer); the bytes written."""
    _write_md(path, frames)
    return path.read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Ten frames of a 32-atom Cu cell as XTC, TRR and DCD: {ext: bytes}."""
    d = tmp_path_factory.mktemp("md_good")
    frames = _frames()
    return {ext: _write(d / f"good.{ext}", frames) for ext in ("xtc", "trr", "dcd")}


#: Reads every file given (topology next to it) in this child process and prints, per
#: file, one JSON line: frames read, count_frames, warnings, skipped, or the error.
_READ = r"""
import json, sys, warnings
from quests_core.errors import QuestsError
from quests_core.io import count_frames, iter_frames
for path in sys.argv[1:]:
    out = {"path": path}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipped = []
        try:
            out["frames"] = [f.frame for f in iter_frames(path, skipped=skipped)]
            out["count"] = count_frames(path)
        except QuestsError as exc:
            out["error"] = str(exc)
    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    out["skipped"] = [list(s) for s in skipped]
    print(json.dumps(out), flush=True)
"""


def _read_in_child(paths: list[Path]) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", _READ, *map(str, paths)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, f"reader exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(got) == len(paths), proc.stdout
    return {Path(g["path"]).name: g for g in got}


def _cli(args: list) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", *map(str, args), "--no-progress",
         "--no-cache", "-k", "8", "--cutoff", "4"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )


def _damaged(tmp_path: Path, good: dict[str, bytes]) -> dict[str, tuple[Path, bytes]]:
    """The damaged files (topology next to each): name -> (path, content)."""
    rng = np.random.default_rng(3)
    xtc, trr, dcd = good["xtc"], good["trr"], good["dcd"]
    tail = bytearray(rng.bytes(1000))
    tail[88] |= 0x80  # a negative "frame size" there: what crashed MDAnalysis's scan
    broken = bytearray(trr)
    at = 5 * TRR_FRAME
    broken[at + 24:at + 64] = b"\xff" * 40  # frame 5's block sizes
    contents = {
        "xtc_tail.xtc": xtc + bytes(tail),
        "xtc_zeros.xtc": xtc + b"\0" * 1000,
        "trr_bad_header.trr": bytes(broken),
        "trr_zero_tail.trr": trr[: 9 * TRR_FRAME] + b"\0" * TRR_FRAME,
        "trr_tail.trr": trr + rng.bytes(1000),
        "dcd_tail.dcd": dcd + rng.bytes(1000),
        "dcd_zeros.dcd": dcd + b"\0" * 1000,
    }
    out = {}
    frames = _frames()
    for name, data in contents.items():
        path = tmp_path / name
        _write(path, frames)
        path.write_bytes(data)
        out[name] = (path, data)
    return out


def _stop_text(path: Path, frame: int, byte: int, reason: str, size: int) -> str:
    return (f"{path}: frame {frame}: at byte {byte}: {reason}; reading stopped there: "
            f"{frame} frames read, the last {size - byte} bytes of the file ignored")


def test_frames_before_garbage_are_read_with_one_warning_naming_frame_and_byte(
    tmp_path, good
):
    files = _damaged(tmp_path, good)
    got = _read_in_child([p for p, _ in files.values()])
    xtc, trr, dcd = len(good["xtc"]), len(good["trr"]), len(good["dcd"])
    expected = {  # name: (frames read, stopped at frame, byte, reason)
        "xtc_tail.xtc": (10, xtc, "not a GROMACS XTC frame (magic number {m}, expected 1995)"),
        "xtc_zeros.xtc": (10, xtc, "not a GROMACS XTC frame (magic number 0, expected 1995)"),
        "trr_bad_header.trr": (5, 5 * TRR_FRAME, "corrupt TRR frame header (block sizes "
                               "[-1, -1, -1, -1, -1, -1, -1, -1, -1, -1])"),
        "trr_zero_tail.trr": (9, 9 * TRR_FRAME,
                              "not a GROMACS TRR frame (magic number 0, expected 1993)"),
        "trr_tail.trr": (10, trr, "not a GROMACS TRR frame (magic number {m}, expected 1993)"),
        "dcd_tail.dcd": (10, dcd, "not a DCD frame (record marker {m}, expected 48)"),
        "dcd_zeros.dcd": (10, dcd, "not a DCD frame (record marker 0, expected 48)"),
    }
    for name, (n, byte, reason) in expected.items():
        path, data = files[name]
        g = got[name]
        assert "error" not in g, g
        assert g["frames"] == list(range(n)), (name, g["frames"])
        assert g["count"] == n, (name, g["count"])
        endian = "<" if name.endswith(".dcd") else ">"
        magic = struct.unpack_from(endian + "i", data, byte)[0]
        text = _stop_text(path, n, byte, reason.format(m=magic), len(data))
        assert g["warnings"] == [f"TruncatedFrameWarning: {text}"], (name, g["warnings"])
        assert g["skipped"] == [[str(path), n, text.split(f"frame {n}: ", 1)[1]]], g["skipped"]


def test_xtc_with_random_bytes_appended_no_longer_kills_the_cli(tmp_path, good):
    """The issue's case: ``trajectory`` and ``entropy`` died by SIGSEGV (3 of 3 runs)."""
    path, data = _damaged(tmp_path, good)["xtc_tail.xtc"]
    size = len(good["xtc"])
    for command in ("entropy", "trajectory"):
        proc = _cli([command, path])
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}: {proc.stderr}"
        warns = [x for x in proc.stderr.splitlines() if x.startswith("warning:")]
        assert len(warns) == 1, proc.stderr
        assert warns[0].startswith(f"warning: {path}: frame 10: at byte {size}: not a GROMACS "
                                   "XTC frame (magic number"), warns
        assert warns[0].endswith("reading stopped there: 10 frames read, the last 1000 bytes "
                                 "of the file ignored"), warns
        assert "Traceback" not in proc.stderr


def test_only_selections_that_reach_the_last_valid_frame_warn(tmp_path, good):
    path, _ = _damaged(tmp_path, good)["trr_tail.trr"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [f.frame for f in iter_frames(path, index="2:5")] == [2, 3, 4]
    for index, frames in (("-2:", [8, 9]), (-1, [9]), ("::3", [0, 3, 6, 9])):
        with pytest.warns(TruncatedFrameWarning, match=r"trr_tail\.trr: frame 10: at byte 5040"):
            assert [f.frame for f in iter_frames(path, index=index)] == frames


def test_python_offsets_match_mdanalysis_on_valid_files(tmp_path, good):
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

    from quests_core.io_mdanalysis import _scan_xdr

    for ext, cls in (("xtc", XTCFile), ("trr", TRRFile)):
        path = tmp_path / f"ok.{ext}"
        path.write_bytes(good[ext])
        with cls(str(path)) as f:
            want = np.asarray(f.offsets)
            n_atoms = f.n_atoms
        scan = _scan_xdr(str(path), ext, n_atoms)
        assert np.array_equal(scan.offsets, want)
        assert not scan.cut_last and scan.stop is None


def test_few_atoms_xtc_and_double_precision_trr(tmp_path):
    """XTC frames of <= 9 atoms are stored uncompressed; a double-precision TRR (written
    here from the single-precision one) has 8-byte reals: both scanned to the byte."""
    frames = []
    for i in range(4):
        atoms = _frames(1)[0][:3]
        atoms.positions[2, 2] += 0.1 * i
        frames.append(atoms)
    xtc = _write(tmp_path / "three.xtc", frames)
    assert len(xtc) == 4 * (56 + 36)
    trr = _write(tmp_path / "three.trr", frames)
    double = _double_trr(trr, 3)
    (tmp_path / "double.trr").write_bytes(double + b"\x01" * 10)
    (tmp_path / "double.pdb").write_bytes((tmp_path / "three.pdb").read_bytes())
    (tmp_path / "three.xtc").write_bytes(xtc + b"\x01" * 10)
    got = _read_in_child([tmp_path / "three.xtc", tmp_path / "double.trr"])
    for name, size in (("three.xtc", len(xtc)), ("double.trr", len(double))):
        g = got[name]
        assert g["frames"] == [0, 1, 2, 3], g
        assert len(g["warnings"]) == 1 and f"frame 4: at byte {size}: " in g["warnings"][0], g
    single = list(iter_frames(tmp_path / "three.trr"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = list(iter_frames(tmp_path / "double.trr"))
    for a, b in zip(single, again, strict=True):
        assert np.abs(a.atoms.positions - b.atoms.positions).max() < 1e-5


def _double_trr(single: bytes, n_atoms: int) -> bytes:
    """A single-precision TRR of box + positions rewritten in double precision."""
    out = b""
    size = 84 + 36 + 12 * n_atoms
    for at in range(0, len(single), size):
        frame = single[at:at + size]
        head = bytearray(frame[:76])
        struct.pack_into(">i", head, 24 + 4 * 2, 72)  # box_size
        struct.pack_into(">i", head, 24 + 4 * 7, 24 * n_atoms)  # x_size
        reals = np.frombuffer(frame[76:], dtype=">f4").astype(">f8")
        out += bytes(head) + reals.tobytes()
    return out


@pytest.mark.parametrize("patch, words", [
    (lambda d: struct.pack_into("<i", d, 96, -1), "corrupt DCD header (title record"),
    (lambda d: struct.pack_into("<i", d, 96, 1_000_000), "corrupt DCD header (title record"),
    (lambda d: d.__setitem__(slice(4, 8), b"XXXX"), "not a DCD file"),
    (lambda d: struct.pack_into("<i", d, 40, 40), "corrupt DCD header (40 fixed atoms of 32)"),
    (lambda d: struct.pack_into("<i", d, 40, -3), "corrupt DCD header (-3 fixed atoms of 32)"),
])
def test_hostile_dcd_headers_are_one_line_errors(tmp_path, good, patch, words):
    """libdcd trusts the title count and the fixed-atom indexes (allocation and writes
    out of bounds): the header is checked in Python before it opens the file."""
    data = bytearray(good["dcd"])
    patch(data)
    path = tmp_path / "bad.dcd"
    _write(path, _frames(1))
    path.write_bytes(bytes(data))
    g = _read_in_child([path])["bad.dcd"]
    assert g["error"].startswith(f"{path}: not a valid CHARMM/NAMD DCD file"), g
    assert words in g["error"] and "\n" not in g["error"], g


def test_dcd_fixed_atom_index_out_of_range_is_an_error(tmp_path, good):
    """A DCD with fixed atoms whose free-atom index names atom 99 of 32."""
    data = bytes(good["dcd"])
    title = struct.unpack_from("<i", data, 92)[0]
    header = 112 + title
    head = bytearray(data[:header])
    struct.pack_into("<i", head, 40, 2)  # 2 fixed atoms: 30 free
    index = np.arange(1, 31, dtype="<i4")
    index[4] = 99
    free = struct.pack("<i", 120) + index.tobytes() + struct.pack("<i", 120)
    path = tmp_path / "fixed.dcd"
    _write(path, _frames(1))
    path.write_bytes(bytes(head) + free + data[header:])
    g = _read_in_child([path])["fixed.dcd"]
    assert g["error"] == (f"{path}: not a valid CHARMM/NAMD DCD file, or truncated (corrupt "
                          "DCD header (free atom index record))"), g


def test_cut_inside_the_first_frame_is_still_an_error(tmp_path, good):
    for ext in ("xtc", "trr", "dcd"):
        path = tmp_path / f"stub.{ext}"
        _write(path, _frames(1))
        data = good[ext]
        dcd_header = 112 + struct.unpack_from("<i", good["dcd"], 92)[0]
        keep = {"xtc": 150, "trr": 450, "dcd": dcd_header + 100}[ext]
        path.write_bytes(data[:keep])
        with pytest.raises(QuestsError, match=rf"stub\.{ext}: frame 0: truncated file: the "
                                              "file ends inside it"):
            list(iter_frames(path))

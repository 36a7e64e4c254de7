"""Hostile descriptor files given as ``--reference`` (issue "Nothing lost and nothing silent", 5).

Every damaged, forged or absurd ``.npz``/``.npy`` must end as one one-line
:class:`~quests_core.errors.QuestsError` naming the file (the CLI: exit 1, one
``error:`` line naming the file, no traceback); a header that declares more
than the file may allocate is refused before anything is allocated.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from quests_core import QuestsError
from quests_core.descriptor_files import (
    COMPRESSED_FLOOR_BYTES,
    MAX_BYTES_ENV,
    load_descriptors,
    save_descriptors,
    sidecar_path,
)

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "sample_data" / "cu_solid_400K.extxyz"
K, CUTOFF, WIDTH = 8, 4.0, 15  # single component: width 2k - 1


def _x(rows: int = 40) -> np.ndarray:
    return np.random.default_rng(0).random((rows, WIDTH)) * 0.1


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A version 1.0 ``.npy`` header declaring ``shape`` (no data)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (63 - (len(text) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _good_npz(path: Path) -> None:
    save_descriptors(path, _x(), k=K, cutoff=CUTOFF)


def _truncated(path: Path) -> None:
    _good_npz(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _crc_broken(path: Path) -> None:
    _good_npz(path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"x.npy") + 400  # inside the stored data of member x.npy
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


def _crc_broken_compressed(path: Path) -> None:
    np.savez_compressed(path, x=_x())
    raw = bytearray(path.read_bytes())
    raw[200] ^= 0x55
    path.write_bytes(bytes(raw))


def _object_npz(path: Path) -> None:
    _zip(path, {"x.npy": _npy_bytes(np.array([[None, 1.0]], dtype=object))})


def _object_npy(path: Path) -> None:
    path.write_bytes(_npy_bytes(np.array([[None, 1.0]], dtype=object)))


def _short_member(path: Path) -> None:
    """x.npy declares 1000 rows and holds 10 (the zip directory agrees with what it holds)."""
    _zip(path, {"x.npy": _npy_header((1000, WIDTH)) + _x(10).tobytes()})


def _short_npy(path: Path) -> None:
    path.write_bytes(_npy_header((1000, WIDTH)) + _x(10).tobytes())


def _huge_member(path: Path) -> None:
    """458 TiB declared: 2**42 rows of width 15 in float64 (stored, 150 bytes of data)."""
    _zip(path, {"x.npy": _npy_header((2**42, WIDTH)) + _x(1).tobytes()})


def _huge_npy(path: Path) -> None:
    path.write_bytes(_npy_header((2**42, WIDTH)) + _x(1).tobytes())


def _zero_bomb(path: Path) -> None:
    """A deflated x.npy of zeros: a few hundred KB on disk, 512 MiB declared."""
    rows = (COMPRESSED_FLOOR_BYTES * 2) // (8 * WIDTH)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as fd:
            fd.write(_npy_header((rows, WIDTH)))
            block = bytes(1 << 22)
            left = rows * WIDTH * 8
            while left:
                fd.write(block[: min(left, len(block))])
                left -= min(left, len(block))


def _extra_data(path: Path) -> None:
    _zip(path, {"x.npy": _npy_bytes(_x(10)) + b"\0" * 64})


def _big_values(path: Path) -> None:
    save_descriptors(path, np.full((4, WIDTH), 1e300), k=K, cutoff=CUTOFF)


def _big_values_npy(path: Path) -> None:
    np.save(path, np.full((4, WIDTH), 1e300))


def _nan_npz(path: Path) -> None:
    x = _x()
    x[3, 2] = np.nan
    save_descriptors(path, x, k=K, cutoff=CUTOFF)


def _sidecar_not_utf8(path: Path) -> None:
    save_descriptors(path, _x(), k=K, cutoff=CUTOFF)
    sidecar_path(path).write_bytes(b'{"format": "quests-descriptors", "source": "\xff\xfe"}')


def _sidecar_is_a_directory(path: Path) -> None:
    np.save(path, _x())
    sidecar_path(path).mkdir()


def _layout_bytes(path: Path) -> None:
    """The layout record stored as raw bytes that are not UTF-8."""
    _zip(path, {"x.npy": _npy_bytes(_x()), "layout.npy": _npy_bytes(np.array(b"\xff\xfe{"))})


def _garbage(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + os.urandom(200))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _bad_header(path: Path) -> None:
    text = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4, 15), 'x': __import__}"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text) + 1) + text + b"\n")


def _unsupported_method(path: Path) -> None:
    _good_npz(path)
    raw = bytearray(path.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # local and central headers: method 99
        at = 0
        while (at := raw.find(sig, at)) >= 0:
            offset = 8 if sig == b"PK\x03\x04" else 10
            raw[at + offset : at + offset + 2] = struct.pack("<H", 99)
            at += 4
    path.write_bytes(bytes(raw))


def _directory(path: Path) -> None:
    path.mkdir()


def _structured(path: Path) -> None:
    np.save(path, np.zeros((4, WIDTH), dtype=[("a", "<f8")]))


#: (file name, writer, a piece of the one-line message)
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated.npz", _truncated, "cannot read descriptor file"),
    ("crc_broken.npz", _crc_broken, "damaged archive: Bad CRC-32"),
    ("crc_broken_deflated.npz", _crc_broken_compressed, "cannot read descriptor file"),
    ("object.npz", _object_npz, "object arrays are not descriptor data"),
    ("object.npy", _object_npy, "object arrays are not descriptor data"),
    ("short_member.npz", _short_member, "member x.npy declares shape (1000, 15)"),
    ("short.npy", _short_npy, "the array declares shape (1000, 15)"),
    ("huge_member.npz", _huge_member, "more than the limit of 16 GiB"),
    ("huge.npy", _huge_npy, "more than the limit of 16 GiB"),
    ("zero_bomb.npz", _zero_bomb, "refused as a decompression bomb"),
    ("extra_data.npz", _extra_data, "holds more data than its header declares"),
    ("values_1e300.npz", _big_values, "values of magnitude 1e+300"),
    ("values_1e300.npy", _big_values_npy, "values of magnitude 1e+300"),
    ("nan.npz", _nan_npz, "NaN or infinite"),
    ("sidecar_latin1.npy", _sidecar_not_utf8, "layout.json: layout record is not UTF-8 text"),
    ("sidecar_dir.npy", _sidecar_is_a_directory, "layout.json: cannot read the layout record"),
    ("layout_bytes.npz", _layout_bytes, "layout is not a text scalar"),
    ("garbage.npz", _garbage, "not a zip archive"),
    ("empty.npz", _empty, "not a zip archive"),
    ("empty.npy", _empty, "not a .npy array"),
    ("bad_header.npy", _bad_header, "the file has a damaged .npy header"),
    ("method_99.npz", _unsupported_method, "cannot read descriptor file"),
    ("directory.npz", _directory, "not a regular file"),
    ("structured.npy", _structured, "not a plain numeric array"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile_descriptors")
    out = {}
    for name, write, _ in CASES:
        path = root / name
        write(path)
        out[name] = path
    return out


def _expected(name: str) -> str:
    return next(m for n, _, m in CASES if n == name)


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_in_process_one_line_naming_the_file(files, name):
    path = files[name]
    with pytest.raises(QuestsError) as info:
        load_descriptors(path, k=K, cutoff=CUTOFF)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    assert _expected(name) in text, text


def test_zero_bomb_is_refused_on_its_header_before_allocating(files, monkeypatch):
    """The bomb's 512 MiB are never allocated: the refusal comes from the header check."""
    path = files["zero_bomb.npz"]
    assert path.stat().st_size < 2 << 20
    allocated = []
    real_empty = np.empty

    def spy(shape, *args, **kw):
        allocated.append(int(np.prod(shape)))
        return real_empty(shape, *args, **kw)

    monkeypatch.setattr(np, "empty", spy)
    with pytest.raises(QuestsError, match=r"zero_bomb.npz: member x.npy declares 512 MiB from "
                                          r"\d+ compressed bytes \(ratio \d+, more than 100\)"):
        load_descriptors(path, k=K, cutoff=CUTOFF)
    assert all(n < 1 << 20 for n in allocated), allocated


def test_explicit_limit_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "ok.npz"
    _good_npz(path)
    np.testing.assert_array_equal(load_descriptors(path, k=K, cutoff=CUTOFF), _x())
    with pytest.raises(QuestsError, match=r"ok.npz: member x.npy declares shape \(40, 15\) of "
                                          r"float64 \(0.00458 MiB\), more than the limit"):
        load_descriptors(path, k=K, cutoff=CUTOFF, max_bytes=1000)
    monkeypatch.setenv(MAX_BYTES_ENV, "1000")
    with pytest.raises(QuestsError, match="more than the limit"):
        load_descriptors(path, k=K, cutoff=CUTOFF)
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(QuestsError, match="QUESTS_MAX_DESCRIPTOR_BYTES must be a number"):
        load_descriptors(path, k=K, cutoff=CUTOFF)


def test_compressed_and_fortran_files_still_read(tmp_path):
    """Real descriptors compress little: a deflated .npz and a Fortran-order .npy read back."""
    x = _x(500)
    np.savez_compressed(tmp_path / "c.npz", x=x, k=K, cutoff=CUTOFF)
    np.testing.assert_array_equal(load_descriptors(tmp_path / "c.npz", k=K, cutoff=CUTOFF), x)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    back = load_descriptors(tmp_path / "f.npy", k=K, cutoff=CUTOFF)
    np.testing.assert_array_equal(back, x)
    np.savez(tmp_path / "legacy.npz", descriptors=x.astype(np.float32), k=K, cutoff=CUTOFF)
    back = load_descriptors(tmp_path / "legacy.npz", k=K, cutoff=CUTOFF)
    assert back.dtype == np.float32 and back.flags.writeable
    np.testing.assert_array_equal(back, x.astype(np.float32))


def _cli(args: list) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "quests_core.cli", *map(str, args), "--no-progress", "--no-cache",
         "-k", str(K), "--cutoff", str(CUTOFF)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_cli_reference_exit_1_one_line_naming_the_file(files, name):
    proc = _cli(["dh", GOOD, "--reference", files[name]])
    err = proc.stderr
    assert proc.returncode == 1, f"{name}: exit {proc.returncode}: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [x for x in err.strip().splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert name in lines[0] and _expected(name) in lines[0], err

"""What every file and every frame is checked for before it is used.

- Bounds: :data:`MAX_FRAME_ATOMS` atoms a frame's header may declare,
  :data:`MIN_ATOM_LINE` bytes an atom line has at least (an absurd count fails
  at once), :data:`MAX_COORDINATE` Å.
- The decompression guard: :func:`open_binary` opens ``.gz``/``.bz2``/``.xz``
  files as streams and :func:`inflated_size` refuses one that inflates past
  ``max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO x its size)``.
- :func:`validate_atoms`: every frame (atomic numbers, finite and sane
  coordinates and cells, zero-volume periodic cells with the axis named).
- The prechecks of fixed-layout formats ASE does not check (the registry,
  :mod:`quests_core.formats`, names them per format): atom counts of ``.gro``
  (:func:`check_gro`) and POSCAR (:func:`check_poscar`) files against their
  lines, the cell of a CIF with fractional coordinates (:func:`check_cif_cell`),
  the MODEL/ENDMDL pairs of a ``.pdb`` (:func:`pdb_complete_models`).
- :func:`decode_frame`: a frame's bytes as text, binary data named in its frame.

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors`,
  :mod:`quests_core.io_common` and :mod:`quests_core.io_errors` (and, deferred,
  the engine's own cell test in :mod:`quests_core.neighbors`).
- Every refusal is one :class:`~quests_core.errors.QuestsError` line naming
  the file and the frame; the messages are the readers' (tests assert them).
- Memory: a few lines of a file, never the whole file (the inflated size is
  found streaming, 1 MiB at a time, and remembered per path, size and mtime).
"""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from quests_core.errors import QuestsError
from quests_core.io_common import frame_error, one_line
from quests_core.io_errors import describe_line

__all__ = [
    "MAX_COORDINATE",
    "MAX_FRAME_ATOMS",
    "MAX_INFLATE_RATIO",
    "MIN_ATOM_LINE",
    "MIN_INFLATE_LIMIT",
    "absurd_count_error",
    "check_cif_cell",
    "check_gro",
    "check_poscar",
    "count_pdb_frames",
    "decode_frame",
    "inflated_size",
    "open_binary",
    "pdb_complete_models",
    "validate_atoms",
]

#: A compressed input may inflate to at most this many times its size (above
#: :data:`MIN_INFLATE_LIMIT`): more is refused as a decompression bomb.
MAX_INFLATE_RATIO = 100

#: Compressed inputs always may inflate to this many bytes.
MIN_INFLATE_LIMIT = 256 << 20

#: Smallest atom line of a text format (``"H 0 0 0"``), to refuse absurd counts fast.
MIN_ATOM_LINE = 7

#: Largest |coordinate| or cell vector length accepted, in Å (1 cm).
MAX_COORDINATE = 1e8

#: Largest atom count a frame's header may declare (also the live follower's,
#: ``follow.MAX_FRAME_ATOMS``).
MAX_FRAME_ATOMS = 10**9


_INFLATED: dict[tuple[str, int, int], int] = {}


def open_binary(path: str):
    """The file opened for reading bytes, decompressing ``.gz``/``.bz2``/``.xz``."""
    from ase.io.formats import get_compression

    _, compression = get_compression(path)
    if compression == "gz":
        import gzip

        return gzip.open(path, "rb")
    if compression == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if compression == "xz":
        import lzma

        return lzma.open(path, "rb")
    return open(path, "rb")


def inflated_size(path: str) -> int:
    """Size of the file's content in bytes (decompressed), refusing decompression bombs.

    A compressed file is decompressed once, streaming, and refused when it
    inflates past ``max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * size)``; the
    result is remembered per (path, size, mtime).
    """
    from ase.io.formats import get_compression

    st = os.stat(path)
    if get_compression(path)[1] is None:
        return st.st_size
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _INFLATED:
        return _INFLATED[key]
    limit = max(MIN_INFLATE_LIMIT, MAX_INFLATE_RATIO * st.st_size)
    total = 0
    try:
        with open_binary(path) as fd:
            while True:
                block = fd.read(1 << 20)
                if not block:
                    break
                total += len(block)
                if total > limit:
                    raise QuestsError(
                        f"decompresses to more than {limit / 2**20:.0f} MiB from "
                        f"{st.st_size / 2**20:.2f} MiB (over {MAX_INFLATE_RATIO} times its size): "
                        "refused as a possible decompression bomb (decompress it yourself if "
                        "it is genuine)",
                        source=path,
                    )
    except QuestsError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise QuestsError(
            f"corrupt or not really compressed ({one_line(exc)})", source=path
        ) from None
    if total == 0:
        raise QuestsError("empty file (after decompression)", source=path)
    _INFLATED[key] = total
    return total



def _absurd_row(rows: np.ndarray) -> int | None:
    """Index of the first row with a coordinate beyond :data:`MAX_COORDINATE`, or None."""
    far = np.abs(rows).max(axis=1) > MAX_COORDINATE
    return int(np.flatnonzero(far)[0]) if far.any() else None


def _absurd_text(row: np.ndarray) -> str:
    """``"(<largest |value|> Å, limit <MAX_COORDINATE> Å)"`` of a row beyond the limit."""
    return f"({np.abs(row).max():.3g} Å, limit {MAX_COORDINATE:.0e} Å)"


def validate_atoms(atoms: Atoms, source: str = "<memory>", frame: int = 0) -> None:
    """Check that a structure can be used to compute descriptors.

    Parameters
    ----------
    atoms : ase.Atoms
    source : str
        File name used in the error message.
    frame : int
        Frame index used in the error message.

    Raises
    ------
    QuestsError
        If the structure has no atoms, non-finite positions or cell, or a cell
        that is degenerate along its periodic axes.
    """
    if not isinstance(atoms, Atoms):
        raise frame_error(source, frame, f"expected ase.Atoms, got {type(atoms).__name__}")
    n = len(atoms)
    if n == 0:
        raise frame_error(source, frame, "has zero atoms")
    numbers = np.asarray(atoms.numbers)
    bad_z = (numbers < 0) | (numbers >= len(chemical_symbols))
    if bad_z.any():
        i = int(np.flatnonzero(bad_z)[0])
        raise frame_error(
            source, frame, f"atom {i} has atomic number {int(numbers[i])}, not a chemical element"
        )
    positions = atoms.positions
    finite = np.isfinite(positions).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise frame_error(
            source,
            frame,
            f"non-finite (NaN/Inf) position for atom {bad} ({int((~finite).sum())} atoms affected)",
        )
    bad = _absurd_row(positions)
    if bad is not None:
        raise frame_error(source, frame, f"atom {bad} has an absurd coordinate "
                           f"{_absurd_text(positions[bad])}")
    cell = np.asarray(atoms.cell[:], dtype=float)
    if not np.isfinite(cell).all():
        raise frame_error(source, frame, "non-finite (NaN/Inf) cell")
    axis = _absurd_row(cell)
    if axis is not None:
        raise frame_error(source, frame, f"cell vector {'abc'[axis]} has an absurd length "
                           f"{_absurd_text(cell[axis])}")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        lengths = np.linalg.norm(cell, axis=1)
        for a in np.flatnonzero(pbc):
            if lengths[a] <= 1e-8:
                raise frame_error(
                    source,
                    frame,
                    f"periodic along {'xyz'[a]} but the cell vector has zero length "
                    f"(cell vector {'abc'[a]}; no cell?)",
                )
        # The descriptor engine's own test (quests_core.neighbors.prepare_cell), with the axis.
        from quests_core.neighbors import cell_heights, complete_cell

        full = complete_cell(cell)
        heights = cell_heights(full)
        periodic = np.flatnonzero(pbc)
        thin = periodic[int(np.argmin(heights[periodic]))]
        if abs(np.linalg.det(full)) < 1e-8 or heights[thin] < 1e-6:
            raise frame_error(
                source,
                frame,
                f"periodic cell has zero volume: its height along periodic axis {'abc'[thin]} "
                f"is {heights[thin]:.3g} Å (flat, collinear or collapsed cell)",
            )



def decode_frame(data: bytes, path: str, frame: int) -> str:
    """A frame's bytes as text; binary data is an error naming the frame and its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise frame_error(
            path, frame, f"binary data where text was expected (line {line} of the frame)"
        ) from None


def absurd_count_error(path: str, frame: int, declared: int, found: int,
                        at_end: bool) -> QuestsError:
    """A count above :data:`MAX_FRAME_ATOMS` with no next frame found after it."""
    where = (f"found {found} atom lines before the end of the file" if at_end
             else f"no next frame in the {found:,} lines after it")
    return frame_error(
        path, frame,
        f"header declares {declared} atoms, more than the {MAX_FRAME_ATOMS:,} a frame may "
        f"hold ({where}): a corrupt atom count",
    )



def _lines(path: str, limit: int):
    """Up to ``limit`` lines of the file as bytes (a generator)."""
    with open_binary(path) as fd:
        for i, line in enumerate(fd):
            if i >= limit:
                return
            yield line


def check_gro(path: str) -> None:
    """A single-frame ``.gro``: its atom count against its atom lines and box line."""
    size = inflated_size(path)
    with open_binary(path) as fd:
        fd.readline()
        count_line = fd.readline()
        try:
            declared = int(count_line.split()[0])
        except (ValueError, IndexError):
            raise frame_error(
                path, 0, f"line 2 should be the number of atoms, found {describe_line(count_line)}"
            ) from None
        if declared < 0:
            raise frame_error(path, 0, f"negative number of atoms ({declared})")
        if declared * MIN_ATOM_LINE > size:
            raise frame_error(
                path, 0, f"truncated file: header declares {declared} atoms, the file has "
                f"{size} bytes"
            )
        found = 0
        for _ in range(declared):
            line = fd.readline()
            if not line:
                break
            found += 1
        box = fd.readline()
        more = any(line.strip() for line in (fd.readline(), fd.readline()))
    if more and found == declared and box:
        raise frame_error(
            path,
            1,
            "more lines after the box line of frame 0: multi-frame .gro files are not read "
            "(split the file or convert it to extxyz)",
        )
    if found < declared or not box:
        raise frame_error(
            path,
            0,
            f"truncated file: header declares {declared} atoms, found {found}"
            + (" and no box line" if found == declared else ""),
        )
    try:
        values = [float(v) for v in box.split()]
    except ValueError:
        values = []
    if len(values) not in (3, 9):
        raise frame_error(
            path,
            0,
            f"the line after the {declared} atoms is not a box line ({describe_line(box)}): "
            "more atom lines than the header declares, or a corrupt file",
        )


def check_poscar(path: str) -> None:
    """A POSCAR: its counts against its position lines, its species line against its counts."""
    lines = [line.decode("utf-8", "replace") for line in _lines(path, 9)]
    if len(lines) < 7:
        return  # ASE reports it
    counts_at = 5
    words = lines[5].split()
    if not all(w.isdigit() for w in words):
        counts_at = 6
        words = lines[6].split()
    if not words or not all(w.lstrip("-").isdigit() for w in words):
        return  # ASE reports it
    counts = [int(w) for w in words]
    if min(counts) < 0:
        raise frame_error(path, 0, f"negative atom count in {lines[counts_at].strip()!r}")
    if counts_at == 6:
        _check_poscar_species(path, lines[5].split(), lines[6].split())
    n = sum(counts)
    header = counts_at + 2
    if len(lines) > counts_at + 1 and lines[counts_at + 1].strip()[:1] in ("s", "S"):
        header += 1  # Selective dynamics
    size = inflated_size(path)
    if n * MIN_ATOM_LINE > size:
        raise frame_error(
            path, 0, f"truncated file: the counts declare {n} atoms, the file has {size} bytes"
        )
    found = 0
    after = b""
    for i, line in enumerate(_lines(path, header + n + 1)):
        if i < header:
            continue
        if i < header + n:
            if line.strip():
                found += 1
        else:
            after = line
    if found < n:
        raise frame_error(path, 0, f"truncated file: the counts declare {n} atoms, found {found}")
    try:
        extra = len(after.split()) >= 3 and all(
            np.isfinite(float(w)) for w in after.split()[:3]
        )
    except ValueError:
        extra = False
    if extra:
        raise frame_error(
            path,
            0,
            f"more position lines than the {n} atoms the counts declare "
            "(velocities must follow a blank line)",
        )


def _check_poscar_species(path: str, species: list[str], counts: list[str]) -> None:
    """The species line (VASP 5) names as many elements as the counts line has counts
    (ASE reads ``Cu Au`` over one count as all Cu)."""
    if len(species) != len(counts):
        raise frame_error(
            path, 0,
            f"the species line names {len(species)} element(s) ({' '.join(species)!r}), the "
            f"counts line has {len(counts)} count(s) ({' '.join(counts)!r})",
        )


def check_cif_cell(path: str, frame: int, atoms: Atoms) -> None:
    """A CIF block with fractional coordinates has a unit cell with volume (ASE reads a
    missing or zero cell as a cell of zeros and puts every atom at the origin)."""
    cell = atoms.cell
    lengths = cell.lengths()
    if cell.rank == 3 and abs(cell.volume) > 1e-6 * float(np.prod(lengths)):
        return
    fractional, has_cell = _cif_tags(path)
    if not fractional:
        return  # Cartesian coordinates without a cell: a molecule
    if not has_cell:
        raise frame_error(
            path, frame,
            "no unit cell: fractional coordinates (_atom_site_fract_x/y/z) need "
            "_cell_length_a, _cell_length_b and _cell_length_c",
        )
    par = ", ".join(f"{v:.6g}" for v in cell.cellpar())
    raise frame_error(
        path, frame,
        f"the unit cell (a, b, c, alpha, beta, gamma) = ({par}) has no volume: fractional "
        "coordinates need a usable cell",
    )


def _cif_tags(path: str) -> tuple[bool, bool]:
    """(the CIF has fractional coordinates, the CIF has cell lengths), from its text."""
    fractional = has_cell = False
    with open_binary(path) as fd:
        for line in fd:
            word = line.strip().lower()
            fractional = fractional or word.startswith(b"_atom_site_fract_")
            has_cell = has_cell or word.startswith(b"_cell_length_")
            if fractional and has_cell:
                break
    return fractional, has_cell


def pdb_complete_models(path: str) -> tuple[int, bool] | None:
    """(complete MODEL blocks, whether one more MODEL has no ENDMDL); None without MODEL."""
    complete = 0
    open_model = False
    seen = False
    with open_binary(path) as fd:
        for line in fd:
            if line.startswith(b"MODEL"):
                seen = True
                open_model = True
            elif line.startswith(b"ENDMDL"):
                if open_model:
                    complete += 1
                open_model = False
    if not seen:
        return None
    return complete, open_model



def count_pdb_frames(path: str) -> int | None:
    """Frames of a ``.pdb`` with MODEL records (a cut last MODEL is skipped, or, alone, an
    error when read); None without MODEL records (ASE counts them)."""
    models = pdb_complete_models(path)
    if models is None:
        return None
    return max(models[0], 1)


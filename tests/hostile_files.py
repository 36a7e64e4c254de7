"""A corpus of hostile structure files, made at test time (issue 11).

``make_corpus(folder)`` writes small malformed (and a few good) files in the
formats quests reads -- extxyz, xyz, LAMMPS text dump, gro, cif, pdb,
POSCAR/vasp, ASE .traj and ASE db .json -- and returns one :class:`Case` per
file with the outcome every entry point (Python loader, CLI, dashboard upload)
must give:

``"ok"``
    The file is read and described; numbers are finite.
``"warning"``
    The last frame of a multi-frame file is cut short (a trajectory still being
    written): that frame is skipped with a one-line warning naming the file and
    the frame; the rest is read.
``"error"``
    A one-line :class:`quests_core.QuestsError` (CLI: exit status 1, one line on
    stderr) naming the file; never a traceback, a signal or a hang.

``"any"``
    Corruption no reader can detect (bytes flipped inside coordinates of a
    ``.traj``): either outcome above, never a crash.

``Case.stage`` says where the error is found: ``"load"`` (the reader,
``quests_core.io``) or ``"describe"`` (bounds checked by the descriptor engine
before any compiled code runs: huge coordinates, density bombs, absurd cells).
``Case.engine`` marks the cases that crashed or hung in the engine before its
bounds were added (issue 11).

``Case.match`` (a regular expression) is what the warning or error must say
where the exact words matter; ``Case.frames`` how many frames the file reads
(where checked).

``make_corpus(folder, md=True)`` adds the binary MD trajectories (GROMACS XTC
and TRR, DCD; written by MDAnalysis, ten frames, each with a PDB topology of
the same name next to it): garbage, a zero-filled tail or a broken frame header
after valid frames is a warning naming the frame and byte offset where reading
stopped, the frames before it read. They need the ``md`` extra (MDAnalysis)
and a topology next to the file, so they are left out by default.

Everything is tiny (a 32-atom Cu cell, three frames) so the corpus is written
in well under a second. Usable on its own::

    python tests/hostile_files.py /tmp/corpus
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write

__all__ = ["FORMATS", "MD_FORMATS", "Case", "make_corpus", "make_md_corpus", "summary"]

#: file suffix of each format of the corpus
FORMATS: dict[str, str] = {
    "extxyz": ".extxyz",
    "xyz": ".xyz",
    "lammps": ".lammpstrj",
    "gro": ".gro",
    "cif": ".cif",
    "pdb": ".pdb",
    "vasp": ".vasp",
    "traj": ".traj",
    "json": ".json",
}
#: file suffix of each binary MD trajectory format (``make_corpus(..., md=True)``)
MD_FORMATS: dict[str, str] = {"xtc": ".xtc", "trr": ".trr", "dcd": ".dcd"}
#: formats that hold several frames in one file (a truncated last frame is a warning)
MULTI_FRAME = ("extxyz", "xyz", "lammps", "pdb", "traj", "json")


@dataclass(frozen=True)
class Case:
    """One corpus file and the outcome it must give."""

    name: str
    path: Path
    expected: str  # "ok" | "error" | "warning" | "any" (ok or error, never a crash)
    fmt: str
    stage: str = "load"  # "load" | "describe"
    engine: bool = False  # crashed/hung in the descriptor engine before issue 11
    note: str = ""
    match: str = ""  # regular expression the warning / error message must contain
    frames: int | None = None  # frames the file reads (None: not checked)


def _frames(n: int = 3) -> list[Atoms]:
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    out = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(0.05, seed=i)
        out.append(atoms)
    return out


def lammps_dump(frames: list[Atoms]) -> str:
    """A LAMMPS text dump with an element column (orthogonal boxes), written by hand."""
    lines = []
    for step, atoms in enumerate(frames):
        cell = atoms.cell.array
        lines += ["ITEM: TIMESTEP", str(100 * step), "ITEM: NUMBER OF ATOMS", str(len(atoms)),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {float(cell[a, a])!r}" for a in range(3)]
        lines.append("ITEM: ATOMS id type element x y z")
        for i, (pos, sym) in enumerate(zip(atoms.positions, atoms.get_chemical_symbols(),
                                           strict=True)):
            x, y, z = (float(v) for v in pos)
            lines.append(f"{i + 1} 1 {sym} {x!r} {y!r} {z!r}")
    return "\n".join(lines) + "\n"


def _write(path: Path, fmt: str, frames: list[Atoms]) -> None:
    if fmt == "lammps":
        path.write_text(lammps_dump(frames))
    elif fmt == "xyz":
        write(path, frames, format="xyz")
    elif fmt == "extxyz":
        write(path, frames, format="extxyz")
    elif fmt in ("gro", "vasp"):
        write(path, frames[0], format={"gro": "gromacs", "vasp": "vasp"}[fmt])
    elif fmt == "cif":
        write(path, frames[0], format="cif")
    elif fmt == "pdb":
        write(path, frames, format="proteindatabank")
    elif fmt == "traj":
        write(path, frames, format="traj")
    elif fmt == "json":
        write(path, frames, format="json")
    else:  # pragma: no cover
        raise ValueError(fmt)


def _frame_spans(text: str, fmt: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each frame of a text file."""
    lines = text.splitlines(keepends=True)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(int)
    starts: list[int] = []
    if fmt == "lammps":
        starts = [i for i, x in enumerate(lines) if x.startswith("ITEM: TIMESTEP")]
    elif fmt == "pdb":
        starts = [i for i, x in enumerate(lines) if x.startswith("MODEL")]
    elif fmt in ("xyz", "extxyz"):
        i = 0
        while i < len(lines):
            starts.append(i)
            i += int(lines[i].split()[0]) + 2
    else:
        starts = [0]
    spans = []
    for j, s in enumerate(starts):
        e = starts[j + 1] if j + 1 < len(starts) else len(lines)
        spans.append((int(offsets[s]), int(offsets[e])))
    return spans


def _atom_line_numbers(text: str, fmt: str, frame_span: tuple[int, int]) -> list[int]:
    """Indices (in the whole file's lines) of the atom lines of one frame."""
    lines = text.splitlines(keepends=True)
    first = len(text[: frame_span[0]].splitlines(keepends=True))
    last = len(text[: frame_span[1]].splitlines(keepends=True))
    out = []
    in_atoms = False
    for i in range(first, last):
        line = lines[i]
        if fmt == "lammps":
            if line.startswith("ITEM: ATOMS"):
                in_atoms = True
                continue
            if in_atoms and not line.startswith("ITEM"):
                out.append(i)
        elif fmt == "pdb":
            if line.startswith(("ATOM", "HETATM")):
                out.append(i)
        elif fmt in ("xyz", "extxyz"):
            if i >= first + 2:
                out.append(i)
        elif fmt == "gro":
            if first + 2 <= i < last - 1:
                out.append(i)
        elif fmt == "vasp":
            if i >= first + 8:
                out.append(i)
        elif fmt == "cif":
            if line.strip().startswith("Cu"):
                out.append(i)
    return out


def make_corpus(folder: str | Path, md: bool = False) -> list[Case]:
    """Write the corpus into ``folder`` (created) and return its cases.

    ``md``: add :func:`make_md_corpus` (needs MDAnalysis).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    cases: list[Case] = []

    def add(name, fmt, expected, writer: Callable[[Path], None], **kw) -> None:
        suffix = kw.pop("suffix", FORMATS[fmt])
        path = folder / f"{name}{suffix}"
        writer(path)
        cases.append(Case(f"{name}{suffix}", path, expected, fmt, **kw))

    def structures(name, fmt, frames, expected="error", **kw):
        add(name, fmt, expected, lambda p: _write(p, fmt, frames), **kw)

    good = _frames(3)
    for fmt in FORMATS:
        many = fmt in MULTI_FRAME
        frames = good if many else good[:1]
        structures(f"{fmt}_good", fmt, frames, expected="ok")
        ref = folder / f"{fmt}_good{FORMATS[fmt]}"
        data = ref.read_bytes()

        def raw(name, content: bytes, expected="error", fmt=fmt, **kw):
            add(name, fmt, expected, lambda p: p.write_bytes(content), **kw)

        # --- bytes: garbage, empty, binary tail, bit flips
        raw(f"{fmt}_random_bytes", rng.bytes(2000))
        raw(f"{fmt}_empty", b"")
        raw(f"{fmt}_whitespace", b"  \n\n \t\n")
        raw(f"{fmt}_nul_bytes", b"\0" * 1000)
        if fmt != "traj":
            raw(f"{fmt}_binary_tail", data + rng.bytes(300),
                note="binary garbage after the last frame")
            text = data.decode()
            # --- truncation
            spans = _frame_spans(text, fmt)
            last = spans[-1]
            cut = last[0] + (last[1] - last[0]) // 2
            raw(f"{fmt}_cut_in_last_frame", data[:cut],
                expected="warning" if many and len(spans) > 1 else "error",
                note="file ends inside its last frame")
            if many and len(spans) > 1:
                first = spans[0]
                raw(f"{fmt}_cut_in_first_frame", data[: first[0] + (first[1] - first[0]) // 2],
                    note="only a partial frame")
            lines = text.splitlines(keepends=True)
            atom_lines = _atom_line_numbers(text, fmt, spans[0])
            if atom_lines and fmt not in ("cif", "pdb"):
                drop = atom_lines[len(atom_lines) // 2]
                raw(f"{fmt}_missing_atom_line", "".join(lines[:drop] + lines[drop + 1:]).encode(),
                    note="first frame has one atom line fewer than its header declares")
            if atom_lines and fmt in ("xyz", "extxyz", "lammps", "gro", "vasp"):
                extra = atom_lines[-1]
                raw(f"{fmt}_extra_atom_line",
                    "".join(lines[:extra + 1] + [lines[extra]] + lines[extra + 1:]).encode(),
                    note="first frame has one atom line more than its header declares")
            if atom_lines:
                mid = atom_lines[0]
                broken = lines[:mid] + [lines[mid][: len(lines[mid]) // 2] + "\n"] + lines[mid + 1:]
                raw(f"{fmt}_half_atom_line", "".join(broken).encode(),
                    note="an atom line cut in half")
                words = [w for w in lines[mid].split() if "." in w]
                bad = lines[mid].replace(max(words, key=len), "1.0e+999x", 1)
                raw(f"{fmt}_garbled_number",
                    "".join(lines[:mid] + [bad] + lines[mid + 1:]).encode())
        else:
            raw("traj_truncated_half", data[: len(data) // 2],
                note="traj cut in half")
            raw("traj_truncated_tail", data[:-40], note="traj cut in its last frame")
            for k, where in enumerate((0.1, 0.5, 0.9)):
                flipped = bytearray(data)
                pos = int(len(data) * where)
                flipped[pos:pos + 8] = bytes(b ^ 0xFF for b in flipped[pos:pos + 8])
                raw(f"traj_bitflip_{k}", bytes(flipped), expected="any",
                    note="8 bytes inverted: may land in coordinates (undetectable)")
            flipped = bytearray(data)
            flipped[:8] = b"NOTULM!!"
            raw("traj_bad_magic", bytes(flipped))

        # --- numbers and cells
        def variant(suffix, mutate, expected="error", fmt=fmt, frames=frames, **kw):
            frames_v = [a.copy() for a in frames]
            for a in frames_v:
                mutate(a)
            structures(f"{fmt}_{suffix}", fmt, frames_v, expected, **kw)

        def zero_cell(a):
            a.cell[:] = 0.0
            a.pbc = True

        def flat_cell(a):
            a.cell[2] = a.cell[2] * 1e-12

        def pbc_no_cell(a):
            a.cell[:] = 0.0
            a.pbc = True

        def tiny(a):
            a.set_cell(a.cell * 1e-2, scale_atoms=True)

        def collapsed(a):
            a.set_cell(a.cell * 1e-4, scale_atoms=True)

        def huge_coord(a):
            a.positions[0] = [1e300, 0.0, 0.0]

        def huge_span(a):
            a.positions[0] = [1e12, -1e12, 5e11]
            a.pbc = False

        def absurd_cell(a):
            a.set_cell(a.cell * 1e200, scale_atoms=False)

        def nan_pos(a):
            a.positions[1, 1] = np.nan

        if fmt not in ("gro", "pdb", "lammps", "cif", "vasp", "xyz"):
            variant("zero_cell_pbc", zero_cell, note="pbc on, cell of zeros")
        if fmt in ("extxyz", "json", "traj", "lammps"):
            variant("flat_cell", flat_cell, note="zero-volume periodic cell")
        if fmt in ("extxyz", "traj", "json"):
            variant("pbc_no_cell", pbc_no_cell, note="pbc with no cell")
            variant("nan_position", nan_pos)
        if fmt != "xyz":  # plain xyz has no cell: a small molecule is fine
            variant("tiny_cell_scaled", tiny, stage="describe", engine=True,
                    note="cell and atoms scaled by 1e-2: a density bomb")
            variant("collapsed_cell", collapsed, note="cell and atoms scaled by 1e-4")
        if fmt not in ("gro", "pdb", "vasp", "cif"):  # fixed-width formats cannot hold 1e300
            variant("huge_1e300", huge_coord, engine=True)
            variant("huge_span", huge_span, engine=True)
            if fmt != "xyz":
                variant("absurd_cell_1e200", absurd_cell, engine=True)
        if fmt in ("traj", "json"):
            variant("atomic_number_999", lambda a: a.numbers.__setitem__(0, 999) or None)
        if fmt == "extxyz":
            raw("extxyz_atomic_number_999",
                re.sub(r"\nCu ", "\n999 ", data.decode(), count=1).encode())

    # --- format specific
    text = (folder / "extxyz_good.extxyz").read_text()
    first_line, rest = text.split("\n", 1)
    add("xyz_declares_1e9_atoms", "xyz", "error",
        lambda p: p.write_text("1000000000\n\nCu 0 0 0\n"),
        note="20-byte file declaring 1,000,000,000 atoms: fail fast")
    add("xyz_negative_count", "xyz", "error", lambda p: p.write_text("-5\n\nCu 0 0 0\n"))
    add("xyz_count_not_a_number", "xyz", "error", lambda p: p.write_text("many\n\nCu 0 0 0\n"))
    add("xyz_unknown_element", "xyz", "error",
        lambda p: p.write_text("2\n\nQq 0 0 0\nCu 1 1 1\n"))
    add("xyz_element_999", "xyz", "error",
        lambda p: p.write_text("2\n\n999 0 0 0\nCu 1.5 1.5 1.5\n"))
    add("extxyz_bad_lattice", "extxyz", "error",
        lambda p: p.write_text(rest.replace("Lattice=\"", "Lattice=\"x ", 1)
                               .join([first_line + "\n", ""])) )
    add("extxyz_lattice_1e400", "extxyz", "error",
        lambda p: p.write_text(
            "1\nLattice=\"1e400 0 0 0 1 0 0 0 1\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\n"
            "Cu 0 0 0\n"))
    add("lammps_bounds_1e300", "lammps", "error",
        lambda p: p.write_text(lammps_dump(good[:1]).replace("0.0 7.22", "0.0 1e300", 1)))
    add("lammps_count_1e9", "lammps", "error",
        lambda p: p.write_text(lammps_dump(good[:1]).replace(
            "ITEM: NUMBER OF ATOMS\n32\n", "ITEM: NUMBER OF ATOMS\n1000000000\n", 1)))
    add("lammps_binary_garbage", "lammps", "error",
        lambda p: p.write_bytes(b"ITEM: TIMESTEP\n0\n" + bytes(range(128, 256)) * 20))
    add("lammps_no_header", "lammps", "error", lambda p: p.write_text("1 1 0 0 0\n2 1 1 1 1\n"))
    add("gro_count_too_large", "gro", "error",
        lambda p: p.write_text((folder / "gro_good.gro").read_text().replace(
            "\n   32\n", "\n   40\n", 1)))
    add("gro_count_1e9", "gro", "error",
        lambda p: p.write_text((folder / "gro_good.gro").read_text().replace(
            "\n   32\n", "\n1000000000\n", 1)))
    add("gro_two_frames", "gro", "error",
        lambda p: p.write_text((folder / "gro_good.gro").read_text() * 2),
        note="ASE reads one frame of a .gro")
    add("extxyz_cut_in_last_line", "extxyz", "warning",
        lambda p: p.write_text((folder / "extxyz_good.extxyz").read_text()[:-6]),
        note="ends inside the last atom line: the number may be cut yet parsable")
    add("vasp_species_cu_au_one_count", "vasp", "error",
        lambda p: p.write_text(_replace_line((folder / "vasp_good.vasp").read_text(), 5,
                                             "Cu Au")),
        match=r"frame 0: the species line names 2 element\(s\) \('Cu Au'\), the counts "
              r"line has 1 count\(s\) \('32'\)",
        note="ASE read every atom as Cu")
    add("vasp_counts_too_large", "vasp", "error",
        lambda p: p.write_text(_replace_line((folder / "vasp_good.vasp").read_text(), 6, "40")))
    add("vasp_counts_1e9", "vasp", "error",
        lambda p: p.write_text(_replace_line((folder / "vasp_good.vasp").read_text(), 6,
                                             "1000000000")))
    add("vasp_zero_cell", "vasp", "error",
        lambda p: p.write_text(_replace_line(_replace_line(_replace_line(
            (folder / "vasp_good.vasp").read_text(), 2, "0 0 0"), 3, "0 0 0"), 4, "0 0 0")))
    add("vasp_flat_cell", "vasp", "error",
        lambda p: p.write_text(_replace_line((folder / "vasp_good.vasp").read_text(), 4,
                                             "7.22 0 0")))
    add("vasp_negative_scale", "vasp", "error",
        lambda p: p.write_text(_replace_line((folder / "vasp_good.vasp").read_text(), 1,
                                             "-1e-300")))
    cif = (folder / "cif_good.cif").read_text()
    add("cif_bad_symop", "cif", "error",
        lambda p: p.write_text(cif.replace("'x, y, z'", "'x, y, qq'", 1)
                               .replace('_space_group_name_H-M_alt    "P 1"\n', "")
                               .replace("_space_group_IT_number       1\n", "")))
    add("cif_bad_spacegroup", "cif", "error",
        lambda p: p.write_text(cif.replace('"P 1"', '"Q 99"', 1)
                               .replace("_space_group_IT_number       1\n", "")
                               .replace("loop_\n  _space_group_symop_operation_xyz\n  'x, y, z'\n",
                                        "")))
    add("cif_spacegroup_999", "cif", "error",
        lambda p: p.write_text(cif.replace("_space_group_IT_number       1",
                                           "_space_group_IT_number       999")
                               .replace("loop_\n  _space_group_symop_operation_xyz\n  'x, y, z'\n",
                                        "")))
    add("cif_no_atoms", "cif", "error",
        lambda p: p.write_text("data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n"
                               "_cell_angle_alpha 90\n_cell_angle_beta 90\n"
                               "_cell_angle_gamma 90\n"))
    add("cif_angles_zero", "cif", "error",
        lambda p: p.write_text(cif.replace("_cell_angle_alpha    90.0",
                                           "_cell_angle_alpha    0.0")))
    add("cif_no_cell", "cif", "error",
        lambda p: p.write_text(re.sub(r"_cell_(length|angle)_\w+\s+\S+\n", "", cif)),
        match=r"frame 0: no unit cell: fractional coordinates \(_atom_site_fract_x/y/z\) "
              r"need _cell_length_a",
        note="ASE read every atom at the origin")
    add("cif_zero_cell", "cif", "error",
        lambda p: p.write_text(re.sub(r"(_cell_length_\w+\s+)\S+", r"\g<1>0.0", cif)),
        match=r"frame 0: the unit cell \(a, b, c, alpha, beta, gamma\) = \(0, 0, 0, 90, 90, "
              r"90\) has no volume",
        note="ASE read every atom at the origin")
    add("json_list", "json", "error", lambda p: p.write_text(json.dumps([1, 2, 3])))
    add("json_list_of_atoms", "json", "error",
        lambda p: p.write_text(json.dumps([{"numbers": [29], "positions": [[0, 0, 0]]}])))
    add("json_not_json", "json", "error", lambda p: p.write_text("{\"1\": {\"numbers\": "))
    add("json_numbers_strings", "json", "error",
        lambda p: p.write_text((folder / "json_good.json").read_text().replace(
            "\"numbers\"", "\"numbers_x\"", 1)))
    add("pdb_no_atoms", "pdb", "error", lambda p: p.write_text("REMARK nothing here\nEND\n"))
    add("pdb_unknown_element", "pdb", "error",
        lambda p: p.write_text("ATOM      1   Qq MOL     1       0.000   0.000   0.000  1.00"
                               "  0.00          Qq\nEND\n"))

    # --- wrong extension and compression
    add("xyz_named_cif", "cif", "error",
        lambda p: p.write_bytes((folder / "xyz_good.xyz").read_bytes()), suffix=".cif",
        note="xyz text with a .cif extension")
    add("cif_named_xyz", "xyz", "error",
        lambda p: p.write_bytes(cif.encode()), suffix=".xyz")
    add("traj_named_extxyz", "extxyz", "error",
        lambda p: p.write_bytes((folder / "traj_good.traj").read_bytes()), suffix=".extxyz")
    add("unknown_extension", "xyz", "error",
        lambda p: p.write_bytes(rng.bytes(500)), suffix=".qqq")
    add("json_named_dat", "json", "error",
        lambda p: p.write_text(json.dumps([1, 2, 3])), suffix=".dat")
    add("good_gzip", "extxyz", "ok",
        lambda p: p.write_bytes(gzip.compress((folder / "extxyz_good.extxyz").read_bytes())),
        suffix=".extxyz.gz")
    add("gzip_corrupt", "extxyz", "error",
        lambda p: p.write_bytes(gzip.compress((folder / "extxyz_good.extxyz").read_bytes())[:-30]
                                + b"\0" * 30), suffix=".extxyz.gz")
    add("gzip_not_gzip", "extxyz", "error",
        lambda p: p.write_bytes((folder / "extxyz_good.extxyz").read_bytes()),
        suffix=".extxyz.gz")
    add("gzip_bomb", "extxyz", "error", _gzip_bomb, suffix=".extxyz.gz",
        note="1 GiB of zeros compressed to ~1 MiB")
    add("gzip_bomb_lines", "lammps", "error", lambda p: _gzip_bomb(p, b"\n"),
        suffix=".lammpstrj.gz", note="1 GiB of newlines")

    # --- a corrupt atom count in frame 2 of a finished 8-frame file: an error naming the
    # frame, never a "cut last frame" that swallows (and silently drops) the 5 frames after it
    eight = _frames(8)
    next_xyz = (r"frame 2: header declares {} atoms, found 32 atom lines and then '32', the "
                r"count line of a next frame \(a corrupt count or a frame cut short\)")
    add("xyz_corrupt_count_mid_file", "xyz", "error",
        lambda p: _corrupt_count(p, "xyz", eight, 2, "100000"),
        match=next_xyz.format(100000),
        note="frame 2 of 8 declares 100000 atoms (has 32): was read as a cut last frame")
    add("extxyz_count_bomb_mid_file", "extxyz", "error",
        lambda p: _corrupt_count(p, "extxyz", eight, 2, "999999999999"),
        match=next_xyz.format(999999999999),
        note="frame 2 of 8 declares 999999999999 atoms: was read as a cut last frame")
    add("lammps_count_bomb_mid_file", "lammps", "error",
        lambda p: _corrupt_count(p, "lammps", eight, 2, "999999999999"),
        match=r"frame 2: truncated or corrupt LAMMPS dump: header declares 999999999999 "
              r"atoms, found 32 atom lines and then 'ITEM: TIMESTEP', the start of a next "
              r"frame \(a corrupt count or a frame cut short\)",
        note="frame 2 of 8 has NUMBER OF ATOMS 999999999999")
    if md:
        cases += make_md_corpus(folder)
    return cases


def _write_md(path: Path, frames: list[Atoms]) -> None:
    """``frames`` in the trajectory format of ``path``'s suffix (MDAnalysis's writer),
    with a PDB topology of the same name next to it (ASE: with the element column)."""
    import warnings

    import MDAnalysis as mda

    n = len(frames[0])
    u = mda.Universe.empty(n, trajectory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mda.Writer(str(path), n) as w:
            for i, atoms in enumerate(frames):
                u.atoms.positions = atoms.positions
                u.dimensions = list(atoms.cell.cellpar())
                u.trajectory.ts.time = float(i)
                w.write(u.atoms)
    write(path.with_suffix(".pdb"), frames[0], format="proteindatabank")


def _xdr_offsets(path: Path, fmt: str) -> list[int]:
    """Byte offset of every frame of a valid XTC/TRR file (MDAnalysis)."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

    with (XTCFile if fmt == "xtc" else TRRFile)(str(path)) as f:
        return [int(o) for o in f.offsets]


def make_md_corpus(folder: str | Path, n_frames: int = 10) -> list[Case]:
    """XTC/TRR/DCD cases (the ``md`` extra): valid files, and valid frames followed by
    garbage, zeros or a broken frame header (issue: nothing lost and nothing silent).

    Every damaged file must read its valid frames (``Case.frames``) with one warning
    naming the frame and byte offset where reading stopped (``Case.match``); before,
    the XTC with random bytes appended killed the process (SIGSEGV in MDAnalysis's C
    offset scan) and the TRR cases lost frames without a word.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12)
    frames = _frames(n_frames)
    cases: list[Case] = []
    good: dict[str, bytes] = {}
    for fmt, suffix in MD_FORMATS.items():
        path = folder / f"{fmt}_md_good{suffix}"
        _write_md(path, frames)
        good[fmt] = path.read_bytes()
        cases.append(Case(path.name, path, "ok", fmt, frames=n_frames))

    def damaged(name: str, fmt: str, content: bytes, stop: int, byte: int, why: str,
                note: str) -> None:
        path = folder / f"{name}{MD_FORMATS[fmt]}"
        _write_md(path, frames)  # the topology next to it
        path.write_bytes(content)
        match = (rf"{re.escape(path.name)}: frame {stop}: at byte {byte}: {why}; reading "
                 rf"stopped there: {stop} frames? read, the last {len(content) - byte} bytes "
                 r"of the file ignored")
        cases.append(Case(path.name, path, "warning", fmt, match=match, frames=stop, note=note))

    xtc, trr, dcd = good["xtc"], good["trr"], good["dcd"]
    tail = bytearray(rng.bytes(1000))
    tail[88] |= 0x80  # read as a negative frame size: MDAnalysis's offset scan then crashed
    damaged("xtc_random_tail_1000", "xtc", xtc + bytes(tail), n_frames, len(xtc),
            r"not a GROMACS XTC frame \(magic number -?\d+, expected 1995\)",
            "1000 random bytes after a valid XTC: SIGSEGV in MDAnalysis's offset scan before")
    damaged("xtc_zero_tail", "xtc", xtc + b"\0" * 1000, n_frames, len(xtc),
            r"not a GROMACS XTC frame \(magic number 0, expected 1995\)",
            "1000 zero bytes after a valid XTC")
    offsets = _xdr_offsets(folder / "trr_md_good.trr", "trr")
    half = n_frames // 2
    broken = bytearray(trr)
    broken[offsets[half] + 24: offsets[half] + 64] = b"\xff" * 40  # its block sizes
    damaged("trr_corrupt_frame_header", "trr", bytes(broken), half, offsets[half],
            r"corrupt TRR frame header \(block sizes \[-1, -1, -1, -1, -1, -1, -1, -1, -1, "
            r"-1\]\)", "frame 5's block sizes overwritten: 5 of 10 frames read silently before")
    last = offsets[-1]
    damaged("trr_zero_tail", "trr", trr[:last] + b"\0" * (len(trr) - last), n_frames - 1,
            last, r"not a GROMACS TRR frame \(magic number 0, expected 1993\)",
            "the last frame zero-filled: 9 of 10 frames read silently before")
    damaged("trr_garbage_tail_1000", "trr", trr + rng.bytes(1000), n_frames, len(trr),
            r"not a GROMACS TRR frame \(magic number -?\d+, expected 1993\)",
            "1000 random bytes after a valid TRR: ignored silently before")
    damaged("dcd_garbage_tail_1000", "dcd", dcd + rng.bytes(1000), n_frames, len(dcd),
            r"not a DCD frame \(record marker -?\d+, expected 48\)",
            "1000 random bytes after a valid DCD: an error at frame 10 before")
    return cases


def _corrupt_count(path: Path, fmt: str, frames: list[Atoms], frame: int, count: str) -> None:
    """``frames`` written in ``fmt`` with the atom count of frame ``frame`` replaced."""
    if fmt == "lammps":
        parts = lammps_dump(frames).split("ITEM: TIMESTEP\n")  # parts[0] is ""
        header = f"ITEM: NUMBER OF ATOMS\n{len(frames[frame])}\n"
        parts[frame + 1] = parts[frame + 1].replace(
            header, f"ITEM: NUMBER OF ATOMS\n{count}\n", 1)
        path.write_text("ITEM: TIMESTEP\n".join(parts))
        return
    write(path, frames, format=fmt)
    lines = path.read_text().splitlines(keepends=True)
    lines[sum(len(a) + 2 for a in frames[:frame])] = f"{count}\n"
    path.write_text("".join(lines))


def _replace_line(text: str, number: int, new: str) -> str:
    lines = text.splitlines()
    lines[number] = new
    return "\n".join(lines) + "\n"


def _gzip_bomb(path: Path, byte: bytes = b"\0", mebibytes: int = 1024) -> None:
    """A multi-member gzip file that inflates to ``mebibytes`` MiB of one byte."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = comp.compress(byte * (1 << 20)) + comp.flush()
    path.write_bytes(member * mebibytes)


def summary(cases: list[Case]) -> dict[str, dict[str, int]]:
    """Counts of expected outcomes per format."""
    out: dict[str, dict[str, int]] = {}
    for case in cases:
        row = out.setdefault(case.fmt, {})
        row[case.expected] = row.get(case.expected, 0) + 1
    return out


if __name__ == "__main__":  # pragma: no cover
    corpus = make_corpus(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    print(len(corpus), "cases")
    for fmt, counts in summary(corpus).items():
        print(f"{fmt:8s} {counts}")

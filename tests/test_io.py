"""Tests of quests_core.io: formats, slicing, streaming and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from quests_core.errors import QuestsError
from quests_core.io import (
    TruncatedFrameWarning,
    count_frames,
    detect_format,
    iter_frames,
    iter_structures,
    parse_index,
    parse_type_map,
    read_structures,
    validate_atoms,
)


def make_frames(n: int = 5) -> list[Atoms]:
    base = bulk("Cu", cubic=True) * (2, 2, 2)
    frames = []
    for i in range(n):
        atoms = base.copy()
        atoms.rattle(0.05, seed=i)
        atoms.info["time"] = 0.5 * i
        frames.append(atoms)
    return frames


def lammps_dump_text(frames: list[Atoms], types: list[int], element: bool = False) -> str:
    """A LAMMPS text dump written by hand (orthogonal boxes)."""
    lines = []
    for step, atoms in enumerate(frames):
        lx, ly, lz = atoms.cell.lengths()
        cols = "id type element x y z" if element else "id type x y z"
        lines += [
            "ITEM: TIMESTEP",
            str(100 * step),
            "ITEM: NUMBER OF ATOMS",
            str(len(atoms)),
            "ITEM: BOX BOUNDS pp pp pp",
            f"0.0 {lx}",
            f"0.0 {ly}",
            f"0.0 {lz}",
            f"ITEM: ATOMS {cols}",
        ]
        symbols = {1: "Cu", 2: "Ni"}
        for i, (pos, t) in enumerate(zip(atoms.positions, types, strict=True)):
            el = f" {symbols[t]}" if element else ""
            lines.append(f"{i + 1} {t}{el} {pos[0]:.8f} {pos[1]:.8f} {pos[2]:.8f}")
    return "\n".join(lines) + "\n"


@pytest.fixture()
def frames() -> list[Atoms]:
    return make_frames(5)


# ---------------------------------------------------------------- parse_index


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, slice(None)),
        (":", slice(None)),
        ("", slice(None)),
        ("3", 3),
        ("-1", -1),
        (2, 2),
        ("1:4", slice(1, 4)),
        ("::2", slice(None, None, 2)),
        ("-3:", slice(-3, None)),
        ("1:10:3", slice(1, 10, 3)),
    ],
)
def test_parse_index(text, expected):
    assert parse_index(text) == expected


@pytest.mark.parametrize("text", ["a", "1:b", "1:2:3:4", "::0", "::-1", "1.5"])
def test_parse_index_rejects(text):
    with pytest.raises(QuestsError, match="index"):
        parse_index(text)


def test_parse_type_map_forms():
    assert parse_type_map("Cu,Ni") == {1: "Cu", 2: "Ni"}
    assert parse_type_map("Cu Ni") == {1: "Cu", 2: "Ni"}
    assert parse_type_map("2=Ni,1=Cu") == {1: "Cu", 2: "Ni"}
    assert parse_type_map("1:Cu 3:O") == {1: "Cu", 3: "O"}
    assert parse_type_map(["Cu", "Ni"]) == {1: "Cu", 2: "Ni"}
    assert parse_type_map({1: "Cu"}) == {1: "Cu"}
    assert parse_type_map(None) == {}
    with pytest.raises(QuestsError, match="not a chemical element"):
        parse_type_map("Cu,Xx")
    with pytest.raises(QuestsError, match="start at 1"):
        parse_type_map({0: "Cu"})


# ------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("t.extxyz", "extxyz"), ("t.xyz", "xyz"), ("t.traj", "traj"), ("t.cif", "cif")],
)
def test_multi_frame_formats_round_trip(tmp_path, frames, name, fmt):
    path = tmp_path / name
    write(path, frames, format=fmt)
    out = read_structures(path)
    assert len(out) == len(frames)
    for a, b in zip(out, frames, strict=True):
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        if fmt == "cif":  # CIF wraps atoms into the cell: compare fractions modulo 1
            diff = a.cell.scaled_positions(a.positions) - b.cell.scaled_positions(b.positions)
            np.testing.assert_allclose((diff + 0.5) % 1.0 - 0.5, 0.0, atol=1e-5)
        else:
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)
    assert [f.frame for f in iter_frames(path)] == list(range(len(frames)))


def test_extxyz_keeps_info_and_arrays(tmp_path, frames):
    for i, atoms in enumerate(frames):
        atoms.arrays["forces_emt"] = np.full((len(atoms), 3), float(i))
    path = tmp_path / "f.extxyz"
    write(path, frames)
    out = read_structures(path, index="2")
    assert len(out) == 1
    assert out[0].info["time"] == pytest.approx(1.0)
    np.testing.assert_array_equal(out[0].arrays["forces_emt"], 2.0)


@pytest.mark.parametrize("name", ["POSCAR", "CONTCAR", "Cu.poscar", "Cu.vasp"])
def test_vasp_single_structure(tmp_path, frames, name):
    path = tmp_path / name
    write(path, frames[0], format="vasp")
    assert detect_format(path) == "vasp"
    out = read_structures(path)
    assert len(out) == 1
    np.testing.assert_allclose(out[0].positions, frames[0].positions, atol=1e-6)
    assert [f.frame for f in iter_frames(path, index="-1")] == [0]
    with pytest.raises(QuestsError, match="selects no frames"):
        read_structures(path, index="1:")


def test_xdatcar(tmp_path, frames):
    path = tmp_path / "XDATCAR"
    write(path, frames, format="vasp-xdatcar")
    assert detect_format(path) == "vasp-xdatcar"
    out = list(iter_frames(path, index="1::2"))
    assert [f.frame for f in out] == [1, 3]
    np.testing.assert_allclose(out[1].atoms.positions, frames[3].positions, atol=1e-5)


def test_lammps_dump_with_type_map(tmp_path, frames):
    types = [1 + (i % 2) for i in range(len(frames[0]))]
    path = tmp_path / "md.lammpstrj"
    path.write_text(lammps_dump_text(frames[:3], types))
    assert detect_format(path) == "lammps-dump-text"
    out = read_structures(path, type_map="Cu,Ni")
    assert len(out) == 3
    assert out[0].get_chemical_symbols()[:2] == ["Cu", "Ni"]
    assert out[1].get_chemical_formula() == "Cu16Ni16"
    np.testing.assert_allclose(out[2].positions, frames[2].positions, atol=1e-6)
    assert out[0].pbc.all()
    # without a map, LAMMPS types become atomic numbers 1 and 2
    assert set(read_structures(path)[0].numbers) == {1, 2}
    # an incomplete map is an error naming the missing type
    with pytest.raises(QuestsError, match=r"md.lammpstrj: frame 0: .*type\(s\) \[2\]"):
        read_structures(path, type_map={1: "Cu"})


def test_lammps_dump_element_column_wins(tmp_path, frames):
    types = [1 + (i % 2) for i in range(len(frames[0]))]
    path = tmp_path / "md.dump"
    path.write_text(lammps_dump_text(frames[:2], types, element=True))
    out = read_structures(path, type_map="Ag,Au")
    assert out[0].get_chemical_formula() == "Cu16Ni16"


def test_lammps_dump_slicing(tmp_path, frames):
    types = [1] * len(frames[0])
    path = tmp_path / "md.dump"
    path.write_text(lammps_dump_text(frames, types))
    assert count_frames(path) == 5
    assert [f.frame for f in iter_frames(path, index="1:4")] == [1, 2, 3]
    assert [f.frame for f in iter_frames(path, index="::2")] == [0, 2, 4]
    assert [f.frame for f in iter_frames(path, index="-2:")] == [3, 4]
    last = list(iter_frames(path, index=-1, type_map="Cu"))
    np.testing.assert_allclose(last[0].atoms.positions, frames[4].positions, atol=1e-6)


def test_lammps_dump_truncated_last_frame_is_skipped_with_a_warning(tmp_path, frames):
    """The truncated-last-frame rule (io.TruncatedFrameWarning): a file still being
    written loses its incomplete last frame with a warning; a short frame followed by
    more frames, or a file whose only frame is cut, is an error."""
    types = [1] * len(frames[0])
    text = lammps_dump_text(frames[:3], types)
    lines = text.splitlines(keepends=True)
    path = tmp_path / "cut.dump"
    path.write_text("".join(lines[:-5]))  # last frame loses 5 atom lines
    skipped = []
    cut = r"cut.dump: frame 2: .*declares 32 atoms, found 27"
    with pytest.warns(TruncatedFrameWarning, match=cut):
        got = [f.frame for f in iter_frames(path, type_map="Cu", skipped=skipped)]
    assert got == [0, 1] and [s[1] for s in skipped] == [2]
    assert count_frames(path) == 2
    # the complete frames before the damage can still be read
    assert len(read_structures(path, index=":2", type_map="Cu")) == 2
    # a short frame in the middle is an error naming it
    body = lammps_dump_text(frames[:1], types).splitlines(keepends=True)
    path.write_text("".join(body[:-3]) + text)
    with pytest.raises(QuestsError, match=r"cut.dump: frame 0: .*declares 32 atoms, found 29"):
        read_structures(path, type_map="Cu")
    # a single frame cut short is an error
    path.write_text("".join(body[:-3]))
    with pytest.raises(QuestsError, match=r"cut.dump: frame 0: .*found 29 and the file ends"):
        read_structures(path, type_map="Cu")


# ------------------------------------------------------------ slicing/stream


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (":", [0, 1, 2, 3, 4]),
        ("1:", [1, 2, 3, 4]),
        (":2", [0, 1]),
        ("::2", [0, 2, 4]),
        ("1:5:2", [1, 3]),
        ("-2:", [3, 4]),
        (":-3", [0, 1]),
        ("-4:-1:2", [1, 3]),
        (-1, [4]),
        ("0", [0]),
        (slice(2, None), [2, 3, 4]),
    ],
)
def test_frame_slicing_extxyz(tmp_path, frames, index, expected):
    path = tmp_path / "t.extxyz"
    write(path, frames)
    got = list(iter_frames(path, index=index))
    assert [f.frame for f in got] == expected
    for f in got:
        np.testing.assert_allclose(f.atoms.positions, frames[f.frame].positions, atol=1e-6)


def test_iter_structures_is_lazy(tmp_path, frames):
    """The generator only parses what is consumed: a damaged frame 3 is not reached."""
    path = tmp_path / "t.extxyz"
    write(path, frames)
    text = path.read_text().splitlines(keepends=True)
    per_frame = len(frames[0]) + 2
    text[3 * per_frame + 2] = "Cu nan nan nan\n"
    path.write_text("".join(text))
    it = iter_structures(path)
    first = [next(it) for _ in range(3)]
    assert len(first) == 3
    with pytest.raises(QuestsError, match=r"t.extxyz: frame 3: non-finite"):
        next(it)


def test_compressed_files(tmp_path, frames):
    import gzip

    path = tmp_path / "t.extxyz"
    write(path, frames)
    gz = tmp_path / "t.extxyz.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert detect_format(gz) == "extxyz"
    assert [f.frame for f in iter_frames(gz, index="-2:")] == [3, 4]
    np.testing.assert_allclose(
        read_structures(gz, index=1)[0].positions, frames[1].positions, atol=1e-6
    )


def test_count_frames(tmp_path, frames):
    write(tmp_path / "a.extxyz", frames)
    write(tmp_path / "a.traj", frames)
    write(tmp_path / "POSCAR", frames[0], format="vasp")
    assert count_frames(tmp_path / "a.extxyz") == 5
    assert count_frames(tmp_path / "a.traj") == 5
    assert count_frames(tmp_path / "POSCAR") == 1


def test_index_out_of_range(tmp_path, frames):
    path = tmp_path / "t.extxyz"
    write(path, frames)
    with pytest.raises(QuestsError, match="selects no frames"):
        read_structures(path, index="10:")
    with pytest.raises(QuestsError, match="frame -9 does not exist"):
        read_structures(path, index=-9)


# ----------------------------------------------------------------- bad input


def test_empty_file(tmp_path):
    path = tmp_path / "empty.extxyz"
    path.touch()
    with pytest.raises(QuestsError, match=r"empty.extxyz: empty file"):
        read_structures(path)


def test_directory(tmp_path):
    with pytest.raises(QuestsError, match="is a directory"):
        read_structures(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(QuestsError, match="file not found"):
        read_structures(tmp_path / "nope.extxyz")


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.foo"
    path.write_text("hello world\n")
    with pytest.raises(QuestsError, match=r"notes.foo: unknown file format"):
        read_structures(path)
    with pytest.raises(QuestsError, match="unknown format 'nonsense'"):
        read_structures(path, format="nonsense")


def test_truncated_extxyz(tmp_path, frames):
    path = tmp_path / "t.extxyz"
    write(path, frames[:3])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-10]))
    with pytest.warns(TruncatedFrameWarning, match=r"t.extxyz: frame 2: the file ends inside it"):
        assert len(read_structures(path)) == 2
    # the same frame cut short but followed by another frame: an error naming it
    path.write_text("".join(lines[:-10] + lines[: len(lines) // 3]))
    with pytest.raises(QuestsError, match=r"t.extxyz: frame 2: .*(truncated|corrupt)"):
        read_structures(path)
    # a 20-byte file declaring 10^9 atoms fails at once
    path.write_text("1000000000\n\nCu 0 0 0\n")
    with pytest.raises(QuestsError, match=r"frame 0: truncated file: .*1000000000 atoms"):
        read_structures(path)


def test_truncated_traj(tmp_path, frames):
    path = tmp_path / "t.traj"
    write(path, frames)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(QuestsError, match=r"t.traj: frame \d+"):
        read_structures(path)


def test_garbage_in_extxyz(tmp_path):
    path = tmp_path / "bad.extxyz"
    path.write_text('3\nLattice="1 0 0 0 1 0 0 0 1" pbc="T T T"\nCu 0 0 zero\n')
    with pytest.raises(QuestsError, match=r"bad.extxyz: frame 0"):
        read_structures(path)


def test_nan_positions(tmp_path, frames):
    frames[2].positions[5] = np.nan
    path = tmp_path / "nan.extxyz"
    write(path, frames)
    with pytest.raises(QuestsError, match=r"nan.extxyz: frame 2: non-finite .* atom 5"):
        read_structures(path)
    assert len(read_structures(path, index=":2")) == 2
    # validation can be switched off
    assert len(read_structures(path, validate=False)) == 5


def test_zero_atom_frame(tmp_path, frames):
    path = tmp_path / "zero.extxyz"
    write(path, [frames[0], Atoms(cell=[5, 5, 5], pbc=True), frames[1]])
    with pytest.raises(QuestsError, match=r"zero.extxyz: frame 1: has zero atoms"):
        read_structures(path)


def test_zero_volume_periodic_cell():
    atoms = Atoms(
        "Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True
    )
    with pytest.raises(QuestsError, match=r"x.extxyz: frame 7: periodic cell has zero volume"):
        validate_atoms(atoms, "x.extxyz", 7)
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 0], pbc=[True, True, True])
    with pytest.raises(QuestsError, match="periodic along z but the cell vector has zero length"):
        validate_atoms(atoms, "x.extxyz", 0)
    # a slab with a zero vector along its non-periodic axis is fine, and so is a molecule
    validate_atoms(
        Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[3, 3, 0], pbc=[True, True, False])
    )
    validate_atoms(Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]]))


def test_error_names_frame_index(tmp_path, frames):
    frames[3].positions[0, 0] = np.inf
    path = tmp_path / "inf.extxyz"
    write(path, frames)
    with pytest.raises(QuestsError) as info:
        read_structures(path, index="1:")
    assert info.value.index == 3
    assert info.value.source == str(path)
    assert "\n" not in str(info.value)

"""POSCAR species/counts mismatch and CIF without a usable cell: one-line errors.

Issue "Nothing lost and nothing silent": a POSCAR whose species line names
``Cu Au`` over one count read every atom as Cu; a CIF without a cell, or with a
zero cell, read every atom at the origin; both exited 0.
"""

from __future__ import annotations

import re

import pytest
from ase.build import bulk
from ase.io import write

from quests_core.errors import QuestsError
from quests_core.io import read_structures


@pytest.fixture()
def cu():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)


def _poscar(tmp_path, atoms, species: str, counts: str):
    path = tmp_path / "POSCAR"
    write(path, atoms, format="vasp")
    lines = path.read_text().splitlines()
    lines[5], lines[6] = species, counts
    path.write_text("\n".join(lines) + "\n")
    return path


def test_poscar_species_and_counts_must_pair_up(tmp_path, cu):
    path = _poscar(tmp_path, cu, " Cu Au", "  32")
    with pytest.raises(QuestsError) as info:
        read_structures(path)
    assert str(info.value) == (f"{path}: frame 0: the species line names 2 element(s) "
                               "('Cu Au'), the counts line has 1 count(s) ('32')")
    path = _poscar(tmp_path, cu, " Cu", "  16 16")
    with pytest.raises(QuestsError, match=r"POSCAR: frame 0: the species line names 1 "
                                          r"element\(s\) \('Cu'\), the counts line has 2"):
        read_structures(path)
    path = _poscar(tmp_path, cu, " Cu Au", "  16 16")  # paired: 16 Cu then 16 Au
    atoms = read_structures(path)[0]
    assert atoms.get_chemical_symbols() == ["Cu"] * 16 + ["Au"] * 16


def _cif(tmp_path, atoms, name="x.cif"):
    path = tmp_path / name
    write(path, atoms, format="cif")
    return path, path.read_text()


def test_cif_with_fractional_coordinates_needs_a_usable_cell(tmp_path, cu):
    path, text = _cif(tmp_path, cu)
    assert len(read_structures(path)[0]) == 32
    path.write_text(re.sub(r"_cell_(length|angle)_\w+\s+\S+\n", "", text))
    with pytest.raises(QuestsError) as info:
        read_structures(path)
    assert str(info.value) == (
        f"{path}: frame 0: no unit cell: fractional coordinates (_atom_site_fract_x/y/z) "
        "need _cell_length_a, _cell_length_b and _cell_length_c"
    )
    path.write_text(re.sub(r"(_cell_length_\w+\s+)\S+", r"\g<1>0.0", text))
    with pytest.raises(QuestsError) as info:
        read_structures(path)
    assert str(info.value) == (
        f"{path}: frame 0: the unit cell (a, b, c, alpha, beta, gamma) = (0, 0, 0, 90, 90, "
        "90) has no volume: fractional coordinates need a usable cell"
    )
    # one zero length: ASE's own consistency check refuses it (one line, too)
    path.write_text(text.replace("_cell_length_c       7.22", "_cell_length_c       0.0"))
    with pytest.raises(QuestsError, match=r"x\.cif: frame 0: "):
        read_structures(path)


def test_cif_with_cartesian_coordinates_and_no_cell_is_a_molecule(tmp_path):
    path = tmp_path / "mol.cif"
    path.write_text(
        "data_mol\nloop_\n  _atom_site_type_symbol\n  _atom_site_label\n"
        "  _atom_site_Cartn_x\n  _atom_site_Cartn_y\n  _atom_site_Cartn_z\n"
        "  Cu Cu1 0.0 0.0 0.0\n  Cu Cu2 2.5 0.0 0.0\n  Cu Cu3 0.0 2.5 0.0\n"
    )
    atoms = read_structures(path)[0]
    assert len(atoms) == 3 and not atoms.pbc.any()
    assert atoms.positions[1].tolist() == [2.5, 0.0, 0.0]

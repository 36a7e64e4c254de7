"""Export picked frames and atoms as extended XYZ with per-atom dH.

Frames are read again from their files (the dashboard keeps only tables in
memory), given the per-atom arrays ``dH`` (nats) and ``picked`` (bool), and
written as extxyz text.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from quests_core.errors import QuestsError

from .state import Results

#: Largest number of frames one export writes.
MAX_EXPORT_FRAMES = 2000


def _read_frame(path: str, frame: int):
    from quests_core.io import iter_frames

    for item in iter_frames(path, index=int(frame)):
        return item.atoms
    raise QuestsError(f"frame {frame}: no longer in the file", source=path)


def frames_with_dh(
    results: Results, structures: Iterable[int], picked_rows: np.ndarray | None = None
) -> list:
    """ASE Atoms of the given structures with ``dH`` and ``picked`` per-atom arrays."""
    structures = [int(s) for s in structures]
    if len(structures) > MAX_EXPORT_FRAMES:
        raise QuestsError(
            f"{len(structures)} frames picked; export at most {MAX_EXPORT_FRAMES} at once"
        )
    frames = results.frames.set_index("structure")
    dh_all = results.atoms["dH"].to_numpy()
    picked = np.zeros(len(dh_all), dtype=bool)
    if picked_rows is not None and len(picked_rows):
        picked[np.asarray(picked_rows, dtype=np.int64)] = True
    out = []
    for s in structures:
        row = frames.loc[s]
        atoms = _read_frame(str(row["path"]), int(row["frame"])).copy()
        start, n = int(row["atom_offset"]), int(row["n_atoms"])
        if len(atoms) != n:
            raise QuestsError(f"frame {int(row['frame'])}: file changed since it was computed",
                              source=str(row["path"]))
        atoms.arrays["dH"] = dh_all[start : start + n].astype(np.float64)
        atoms.arrays["picked"] = picked[start : start + n]
        atoms.info["structure"] = s
        atoms.info["source"] = str(row["source"])
        for column in ("H", "mean_dH", "frac_novel"):
            if column in row:
                atoms.info[column] = float(row[column])
        out.append(atoms)
    return out


def to_extxyz_bytes(structures: list) -> bytes:
    """extxyz text of a list of ASE Atoms."""
    if not structures:
        raise QuestsError("nothing to export: no frames picked")
    from quests_core.export import write_extxyz

    with tempfile.TemporaryDirectory(prefix="quests-export-") as folder:
        path = Path(folder) / "export.extxyz"
        write_extxyz(path, structures)
        return path.read_bytes()


def export_frames(results: Results | None, structures: Iterable[int],
                  picked_rows: np.ndarray | None = None) -> io.BytesIO:
    """extxyz of the given frames (for a FileDownload callback)."""
    if results is None:
        raise QuestsError("nothing computed yet")
    return io.BytesIO(to_extxyz_bytes(frames_with_dh(results, structures, picked_rows)))


def export_atoms(results: Results | None, rows: np.ndarray | None) -> io.BytesIO:
    """extxyz of every frame that holds a picked atom, with the ``picked`` flag."""
    if results is None:
        raise QuestsError("nothing computed yet")
    if rows is None or len(rows) == 0:
        raise QuestsError("no atoms picked: lower the threshold or draw a box")
    structures = np.unique(results.atoms["structure"].to_numpy()[np.asarray(rows)])
    return export_frames(results, structures, rows)

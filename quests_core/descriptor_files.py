"""Descriptor files that carry their column layout: save, inspect, load.

A descriptor array is only meaningful with the settings it was computed with
(``k``, ``cutoff``, ``species``) and the order of its columns.  This module
writes that record next to the array and refuses, on loading, a file whose
record does not match what the caller computes, so descriptors written by one
tool and read by another never give a wrong dH without a word.

Formats
-------
``.npz``
    Array ``x`` (n, d); ``layout``, a 0-d string array holding the JSON record
    (see :func:`layout_record`); and scalars ``k`` and ``cutoff``, so readers
    of the earlier ``.npz`` format (``descriptors`` or ``x``, ``k``,
    ``cutoff``) still read the file.
``.npy``
    The bare array (readable by any tool, e.g. ``numpy.load``) and the record
    in a sidecar ``<path>.layout.json`` (``x.npy`` -> ``x.npy.layout.json``).

The layout record (JSON object)::

    {"format": "quests-descriptors", "descriptor_version": "2",
     "block_order": "reference: [X1_all, X1_s..., X2_all, X2_s...]",
     "k": 32, "cutoff": 5.0, "species": ["Au", "Cu"], "width": 189,
     "source": "train.xyz"}

Files without a record
----------------------
* A bare ``.npy`` (no sidecar), or an ``.npz`` holding only ``x`` or
  ``descriptors``, e.g. the output of the reference package ``quests``, is
  accepted when its width equals ``descriptor_width(k, n_species)``, and is
  then taken to be in the reference layout (:data:`quests_core.descriptors.LAYOUT`),
  which is the layout of this package from descriptor version 2 on.
* An ``.npz`` in the earlier format of this package (``k``/``cutoff`` scalars,
  no ``layout``) is accepted for a single-component descriptor (width
  ``2k - 1``: one block, the same in every layout) after its ``k`` and
  ``cutoff`` are checked; for a multicomponent descriptor it is refused,
  because those files were written with the earlier block order
  ``[X_all, X_s...]`` (each ``[X1, X2]``) that nothing records.

Invariants
----------
- A file is refused (one-line :class:`~quests_core.errors.QuestsError` naming
  the file and every field that differs) when its ``k``, ``cutoff``, width,
  block order or descriptor version differ from the caller's, or when its
  species differ and either side is multicomponent (a single-component
  descriptor does not depend on the species).
- Writes are atomic (:func:`quests_core.atomic.atomic_path`).
- Nothing here imports the reference package.

Memory: loading holds the array once (no copy, the file's dtype is kept);
saving writes the caller's array as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .descriptors import DESCRIPTOR_VERSION, LAYOUT, descriptor_width
from .errors import QuestsError
from .settings import normalize_species

__all__ = [
    "FORMAT",
    "SUFFIXES",
    "layout_record",
    "load_descriptors",
    "read_layout",
    "save_descriptors",
    "sidecar_path",
    "write_layout",
]

#: the ``format`` field of every layout record this module writes
FORMAT = "quests-descriptors"
#: the file kinds this module reads and writes
SUFFIXES = (".npz", ".npy")
#: the block order of the earlier (descriptor version 1) multicomponent layout
OLD_LAYOUT = "quests-dashboard v1: [X_all, X_s...], each [X1, X2]"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The layout sidecar of a ``.npy`` file: ``<path>.layout.json``."""
    return Path(f"{os.fspath(path)}.layout.json")


def _species_list(species) -> list[str]:
    return list(normalize_species(species) or ())


def layout_record(k: int, cutoff: float, species=None, source: str | None = None) -> dict:
    """The layout record of descriptors computed with these settings.

    Parameters
    ----------
    k, cutoff
        Descriptor settings.
    species : str or list of str, optional
        Species of the multicomponent descriptor (normalised: sorted, distinct).
    source : str, optional
        Where the descriptors come from (e.g. the structure file); informative only.

    Returns
    -------
    dict
        JSON-serialisable: ``format``, ``descriptor_version``, ``block_order``,
        ``k``, ``cutoff``, ``species``, ``width`` and ``source``.
    """
    sp = _species_list(species)
    return {
        "format": FORMAT,
        "descriptor_version": DESCRIPTOR_VERSION,
        "block_order": LAYOUT,
        "k": int(k),
        "cutoff": float(cutoff),
        "species": sp,
        "width": descriptor_width(int(k), len(sp)),
        "source": None if source is None else str(source),
    }


def _suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise QuestsError("a descriptor file ends with .npz or .npy", source=str(path))
    return suffix


def save_descriptors(
    path: str | os.PathLike, x: np.ndarray, *, k: int, cutoff: float, species=None,
    source: str | None = None,
) -> Path:
    """Write descriptors with their layout record.

    Parameters
    ----------
    path : str or path
        ``.npz`` (array and record in one file) or ``.npy`` (the bare array, the
        record in ``<path>.layout.json``).
    x : array (n, d)
        Descriptors in this package's (= the reference's) layout.
    k, cutoff, species
        The settings they were computed with; ``d`` must equal
        ``descriptor_width(k, len(species))``.
    source : str, optional
        Where they come from, stored in the record.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    suffix = _suffix(path)
    x = np.asarray(x)
    record = layout_record(k, cutoff, species, source)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise QuestsError(
            f"descriptors must be a 2-D float array, got shape {x.shape} dtype {x.dtype}",
            source=str(path),
        )
    if x.shape[1] != record["width"]:
        raise QuestsError(
            f"descriptor width {x.shape[1]} does not match k={record['k']}, species "
            f"{record['species']} (width {record['width']})", source=str(path),
        )
    text = json.dumps(record, sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fd:
        if suffix == ".npz":
            np.savez(fd, x=x, layout=np.array(text), k=record["k"], cutoff=record["cutoff"])
        else:
            np.save(fd, x, allow_pickle=False)
    if suffix == ".npy":
        with atomic_path(sidecar_path(path)) as tmp:
            tmp.write_text(text + "\n")
    return Path(path)


def write_layout(
    path: str | os.PathLike, *, k: int, cutoff: float, species=None, source: str | None = None
) -> Path:
    """Write the sidecar ``<path>.layout.json`` of a ``.npy`` written elsewhere.

    For writers that stream a large array into a ``.npy`` themselves (e.g. a
    memory-mapped file filled one frame at a time): the array's width is
    checked against the settings before the record is written.

    Returns
    -------
    pathlib.Path
        The sidecar written.
    """
    if _suffix(path) != ".npy":
        raise QuestsError("a layout sidecar belongs to a .npy file", source=str(path))
    record = layout_record(k, cutoff, species, source)
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise QuestsError(f"cannot read descriptor file ({exc})", source=str(path)) from None
    if x.ndim != 2 or x.shape[1] != record["width"]:
        raise QuestsError(
            f"descriptor array has shape {x.shape}, expected width {record['width']} for "
            f"k={record['k']}, species {record['species']}", source=str(path),
        )
    del x
    side = sidecar_path(path)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
    return side


def _parse_record(text: str, where: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise QuestsError(f"layout record is not JSON ({exc.msg})", source=where) from None
    if not isinstance(record, dict):
        raise QuestsError("layout record is not a JSON object", source=where)
    return record


def _read(path: str) -> tuple[np.ndarray, dict | None, dict]:
    """(array, layout record or None, legacy scalars ``k``/``cutoff`` found in an .npz)."""
    suffix = _suffix(path)
    if not Path(path).is_file():
        raise QuestsError("file not found", source=path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise QuestsError(f"cannot read descriptor file ({exc})", source=path) from None
    if suffix == ".npy" or isinstance(data, np.ndarray):
        if not isinstance(data, np.ndarray):
            raise QuestsError("not a .npy array", source=path)
        side = sidecar_path(path)
        record = _parse_record(side.read_text(), str(side)) if side.is_file() else None
        return data, record, {}
    with data:
        key = "x" if "x" in data.files else "descriptors" if "descriptors" in data.files else None
        if key is None:
            raise QuestsError("no 'x' or 'descriptors' array in the file", source=path)
        x = data[key]
        record = _parse_record(str(data["layout"]), path) if "layout" in data.files else None
        legacy = {}
        for name in ("k", "cutoff"):
            if name in data.files:
                try:
                    legacy[name] = data[name].item()
                except ValueError:
                    raise QuestsError(f"'{name}' is not a scalar", source=path) from None
    return x, record, legacy


def read_layout(path: str | os.PathLike) -> dict | None:
    """The layout record of a descriptor file, ``None`` when it has none."""
    return _read(os.fspath(path))[1]


def _differences(record: dict, expected: dict) -> list[str]:
    diffs = []
    for name, label in (("format", "format"), ("block_order", "block order"),
                        ("descriptor_version", "descriptor version")):
        if str(record.get(name)) != str(expected[name]):
            diffs.append(f"{label} {record.get(name)!r} in the file, {expected[name]!r} expected")
    try:
        k = int(record.get("k"))
        cutoff = float(record.get("cutoff"))
        width = int(record.get("width"))
        species = _species_list(record.get("species"))
    except (TypeError, ValueError, QuestsError):
        return [*diffs, "k, cutoff, width or species unreadable"]
    if k != expected["k"]:
        diffs.append(f"k {k} in the file, {expected['k']} asked")
    if not np.isclose(cutoff, expected["cutoff"], rtol=0, atol=1e-12):
        diffs.append(f"cutoff {cutoff:g} in the file, {expected['cutoff']:g} asked")
    multi = len(species) > 1 or len(expected["species"]) > 1
    if multi and species != expected["species"]:
        diffs.append(f"species {species} in the file, {expected['species']} asked")
    if width != expected["width"]:
        diffs.append(f"width {width} in the file, {expected['width']} asked")
    return diffs


def load_descriptors(path: str | os.PathLike, *, k: int, cutoff: float, species=None) -> np.ndarray:
    """Descriptors from a file, checked against the settings they will be compared with.

    Parameters
    ----------
    path : str or path
        ``.npz`` or ``.npy`` (see the module docstring for files without a layout).
    k, cutoff, species
        The settings of the descriptors these will be compared with.

    Returns
    -------
    numpy.ndarray
        ``(n, descriptor_width(k, n_species))``, the file's float dtype, in the
        reference layout.

    Raises
    ------
    QuestsError
        One line naming the file and what differs (k, cutoff, species, width,
        block order, descriptor version), or what is wrong with the file.
    """
    where = os.fspath(path)
    expected = layout_record(k, cutoff, species)
    x, record, legacy = _read(where)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise QuestsError(f"descriptor array has shape {x.shape}, expected (n, d)", source=where)
    if x.dtype.kind != "f":
        raise QuestsError(f"descriptor array has dtype {x.dtype}, expected float", source=where)
    diffs: list[str] = []
    if record is not None:
        diffs = _differences(record, expected)
    else:
        if "k" in legacy and int(legacy["k"]) != expected["k"]:
            diffs.append(f"k {legacy['k']} in the file, {expected['k']} asked")
        if "cutoff" in legacy and not np.isclose(float(legacy["cutoff"]), expected["cutoff"],
                                                 rtol=0, atol=1e-12):
            diffs.append(f"cutoff {legacy['cutoff']:g} in the file, {expected['cutoff']:g} asked")
        if legacy and len(expected["species"]) > 1:
            diffs.append(
                "no layout record (written before descriptor version "
                f"{DESCRIPTOR_VERSION}, block order {OLD_LAYOUT!r}); recompute the descriptors"
            )
    if x.shape[1] != expected["width"] and not any(d.startswith("width") for d in diffs):
        diffs.append(f"width {x.shape[1]} in the file, {expected['width']} asked "
                     f"(k={expected['k']}, species {expected['species']})")
    if diffs:
        raise QuestsError("descriptor layout differs: " + "; ".join(diffs), source=where)
    if not np.isfinite(x).all():
        raise QuestsError("descriptor array has NaN or infinite values", source=where)
    return x


"""Path safety for the dashboard's data directory.

The dashboard only ever reads files that lie inside its data directory (or
files a user uploaded into a private per-session folder). Every path that
comes from the browser goes through :func:`resolve_in_dir`, which refuses
absolute paths, ``..`` components and symlinks that lead outside the
directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from quests_core.errors import QuestsError

#: File name endings the data picker lists and the upload accepts: every structure
#: format :mod:`quests_core.io` reads through ASE (see ``io.EXTENSION_FORMATS``;
#: the other endings ASE recognises itself). Compressed files add ``.gz``.
DATA_SUFFIXES: tuple[str, ...] = (
    ".extxyz",
    ".xyz",
    ".traj",
    ".cif",
    ".pdb",
    ".gro",
    ".vasp",
    ".poscar",
    ".contcar",
    ".xdatcar",
    ".lammpstrj",
    ".lammpsdump",
    ".dump",
    ".data",
    ".lmp",
    ".lammpsdata",
    ".xsf",
    ".gz",
)
#: File names without a suffix that are still structure files (VASP).
DATA_NAMES: tuple[str, ...] = ("POSCAR", "CONTCAR", "XDATCAR")
#: Endings of LAMMPS dumps and data files (their atoms may carry only numeric types).
LAMMPS_SUFFIXES: tuple[str, ...] = (
    ".lammpstrj", ".lammpsdump", ".dump", ".data", ".lmp", ".lammpsdata",
)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_data_dir() -> Path:
    """``$QUESTS_DATA_DIR`` if set, else ``sample_data`` next to the ``dashboard`` package."""
    env = os.environ.get("QUESTS_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "sample_data"


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    """Resolve ``data_dir`` and check that it is an existing directory."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise QuestsError(f"data directory {str(root)!r} does not exist or is not a directory")
    return root.resolve()


def resolve_in_dir(
    root: str | os.PathLike, relative: str | os.PathLike, directory: bool = False
) -> Path:
    """Return the real path of ``relative`` inside ``root``, refusing anything outside.

    Parameters
    ----------
    root : path
        The data directory.
    relative : path
        A path relative to ``root`` as the browser sent it.
    directory : bool
        Expect a directory (a chunk store) instead of a file.

    Raises
    ------
    QuestsError
        For an empty, absolute or ``..`` path, a path whose real location
        (after following symlinks) is outside ``root``, or a missing file.
    """
    text = str(relative).strip()
    if not text:
        raise QuestsError("empty file name")
    if "\x00" in text:
        raise QuestsError(f"{text!r}: file name contains a NUL byte")
    for flavour in (PurePosixPath, PureWindowsPath):
        pure = flavour(text)
        if pure.is_absolute() or pure.anchor:
            raise QuestsError(
                f"{text}: absolute paths are not allowed, pick a file in the data directory"
            )
        if ".." in pure.parts:
            raise QuestsError(f"{text}: '..' is not allowed in file names")
    base = Path(root).resolve()
    target = (base / text).resolve()
    if target != base and base not in target.parents:
        raise QuestsError(f"{text}: the file lies outside the data directory")
    if directory:
        if not target.is_dir():
            raise QuestsError(f"{text}: no such directory in the data directory")
    elif not target.is_file():
        raise QuestsError(f"{text}: no such file in the data directory")
    return target


def is_data_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a structure file the readers understand."""
    name = Path(path).name
    if name.startswith("."):
        return False
    return name.lower().endswith(DATA_SUFFIXES) or name.startswith(DATA_NAMES)


def is_lammps_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a LAMMPS dump or data file (``.gz`` allowed)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(LAMMPS_SUFFIXES)


#: Words of a file name that suggest a reference (training set, equilibrium solid) ...
_REFERENCE_WORDS = {
    "reference": 3, "ref": 3, "train": 3, "training": 3, "trainset": 3,
    "solid": 2, "crystal": 2, "bulk": 2, "equilibrium": 2, "ideal": 2,
}
#: ... or a trajectory (a run to check against the reference).
_TRAJECTORY_WORDS = {
    "failed": 3, "traj": 3, "trajectory": 3, "simulation": 3, "run": 3, "production": 3,
    "md": 2, "melt": 2, "quench": 2, "nvt": 2, "npt": 2, "anneal": 2, "dump": 2,
}


def _role_score(relative: str, words: dict[str, int]) -> int:
    tokens = {t for t in re.split(r"[^a-z0-9]+", relative.lower()) if t}
    return max((words.get(t, 0) for t in tokens), default=0)


def _best(files: list[str], words: dict[str, int]) -> str | None:
    scores = {f: _role_score(f, words) for f in files}
    top = max(scores.values(), default=0)
    if top == 0:
        return None
    best = [f for f, score in scores.items() if score == top]
    return best[0] if len(best) == 1 else None


def default_selection(files: list[str]) -> list[tuple[str, str]]:
    """The files a fresh session starts with: one reference and one trajectory.

    Parameters
    ----------
    files : list of str
        Relative paths of the data directory (as :func:`list_data_files` gives).

    Returns
    -------
    list of (file, role)
        ``(reference_file, "reference")`` and ``(trajectory_file, "trajectory")``
        for the files whose names suggest those roles best (words of the name
        such as ``ref``, ``train``, ``solid``, ``crystal`` and ``traj``,
        ``failed``, ``simulation``, ``run``, ``md``, ``melt``; LAMMPS dumps count
        as trajectories). A role whose best candidates tie is left out
        (ambiguous), a file is never chosen twice, and a directory holding a
        single structure file starts with it as a trajectory (dH against its
        own first frame). Nothing matches: an empty list.
    """
    files = list(files)
    run_words = {**_TRAJECTORY_WORDS, "lammpstrj": 2, "xdatcar": 2}
    reference = _best(files, _REFERENCE_WORDS)
    if reference is not None and _role_score(reference, run_words) >= _role_score(
        reference, _REFERENCE_WORDS
    ):
        reference = None  # e.g. "md_run_ref": more a run than a reference
    trajectory = _best([f for f in files if f != reference], run_words)
    chosen = []
    if reference is not None:
        chosen.append((reference, "reference"))
    if trajectory is not None:
        chosen.append((trajectory, "trajectory"))
    if not chosen and len(files) == 1:
        chosen.append((files[0], "trajectory"))
    return chosen



def list_data_files(root: str | os.PathLike, max_files: int = 2000) -> list[str]:
    """Relative paths (POSIX style) of the structure files under ``root``.

    Symlinks whose target lies outside ``root`` are not listed; hidden
    directories are skipped.
    """
    base = check_data_dir(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_data_file(path):
                continue
            rel = path.relative_to(base).as_posix()
            try:
                resolve_in_dir(base, rel)
            except QuestsError:
                continue
            found.append(rel)
            if len(found) >= max_files:
                return found
    return found


def safe_upload_name(name: str) -> str:
    """A file name for an upload: its last component with odd characters replaced."""
    base = PureWindowsPath(PurePosixPath(str(name)).name).name
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    if not base:
        raise QuestsError(f"{name!r}: not a usable file name")
    return base[:200]


def check_upload_size(name: str, size: int, max_bytes: int) -> None:
    """Refuse an upload larger than ``max_bytes``."""
    if size > max_bytes:
        raise QuestsError(
            f"{name}: upload is {size / 1e6:.1f} MB, larger than the {max_bytes / 1e6:.1f} MB limit"
        )
    if size == 0:
        raise QuestsError(f"{name}: the uploaded file is empty")

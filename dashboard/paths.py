"""Path safety for the dashboard's data directory.

The dashboard only ever reads files that lie inside its data directory (or
files a user uploaded into a private per-session folder). Every path that
comes from the browser goes through :func:`resolve_in_dir`, which refuses
absolute paths, ``..`` components and symlinks that lead outside the
directory.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from quests_core.errors import QuestsError
from quests_core.formats import file_names, lammps_suffixes, suffixes
from quests_core.io_mdanalysis import MD_EXTENSIONS, TOPOLOGY_FORMATS

#: Endings of the MD trajectories read through MDAnalysis with a topology (XTC, TRR,
#: DCD, Amber NetCDF; docs/formats.md).
MD_SUFFIXES: tuple[str, ...] = tuple(f".{ext}" for ext in MD_EXTENSIONS)
#: Endings of the topology files that name an MD trajectory's atoms.
TOPOLOGY_SUFFIXES: tuple[str, ...] = tuple(f".{ext}" for ext in TOPOLOGY_FORMATS)

#: File name endings the data picker lists and the upload accepts: every suffix of the
#: format registry (:func:`quests_core.formats.suffixes`: the formats read through ASE,
#: our splitters and MDAnalysis, :data:`MD_SUFFIXES` among them; the other endings ASE
#: recognises itself are read too, but not listed). Compressed files add ``.gz``.
DATA_SUFFIXES: tuple[str, ...] = (*suffixes(), ".gz")
#: Endings of topology files that are no structure file of their own (PSF, Amber prmtop,
#: GROMACS tpr): the upload accepts them (stored next to the session's uploads, where a
#: trajectory of the same name finds them), the picker does not list them.
TOPOLOGY_ONLY_SUFFIXES: tuple[str, ...] = tuple(
    s for s in TOPOLOGY_SUFFIXES if s not in DATA_SUFFIXES)
#: File names without a suffix that are still structure files (VASP), from the registry.
DATA_NAMES: tuple[str, ...] = file_names()
#: Endings of LAMMPS dumps and data files (their atoms may carry only numeric types).
LAMMPS_SUFFIXES: tuple[str, ...] = lammps_suffixes()

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
log = logging.getLogger(__name__)


#: The small demo data set shipped inside the package (frames of ``sample_data/``; its
#: README says which): what a wheel install opens on.
DEMO_DATA_DIR = Path(__file__).resolve().parent / "demo_data"
#: ``sample_data/`` of a checkout (absent from a wheel install).
CHECKOUT_DATA_DIR = Path(__file__).resolve().parent.parent / "sample_data"
#: Entries of the current directory looked at to decide whether it holds structure files.
_CWD_SCAN_LIMIT = 10_000


def _holds_structure_files(folder: Path) -> bool:
    """Whether ``folder`` itself (not its subfolders) holds a structure file."""
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= _CWD_SCAN_LIMIT:
                    return False
                name = entry.name
                if name.lower().endswith(".gz"):
                    name = name[:-3]  # a compressed structure file, not any archive
                if name and is_data_file(name) and entry.is_file():
                    return True
    except OSError:
        return False
    return False


def choose_data_dir(cwd: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory the dashboard opens without ``--data-dir``, and why.

    In order: ``$QUESTS_DATA_DIR`` if set; the current directory (``cwd``) when it holds
    structure files itself; ``sample_data/`` of a checkout next to the ``dashboard``
    package; the demo data shipped in the package (:data:`DEMO_DATA_DIR`). The reason
    is a short phrase for the start-up line.
    """
    env = os.environ.get("QUESTS_DATA_DIR")
    if env:
        return Path(env), "from $QUESTS_DATA_DIR"
    try:
        here = Path.cwd() if cwd is None else Path(cwd)
    except OSError:  # the current directory was removed
        here = None
    if here is not None and _holds_structure_files(here):
        return here, "the current directory, which holds structure files"
    if CHECKOUT_DATA_DIR.is_dir():
        return CHECKOUT_DATA_DIR, "the sample data of the repository checkout"
    return DEMO_DATA_DIR, ("the demo data shipped with the package; --data-dir DIR, or "
                           "starting in a folder of structure files, serves your own")


def default_data_dir() -> Path:
    """The data directory without ``--data-dir`` (see :func:`choose_data_dir`)."""
    return choose_data_dir()[0]


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    """Resolve ``data_dir`` and check that it is an existing directory."""
    root = Path(data_dir).expanduser()
    try:
        if not root.is_dir():
            raise QuestsError(
                f"data directory {str(root)!r} does not exist or is not a directory")
        return root.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise QuestsError(f"data directory {str(root)!r} cannot be opened "
                          f"({_reason(exc)})") from None


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
    try:
        base = Path(root).resolve()
        target = (base / text).resolve()
        if target != base and base not in target.parents:
            raise QuestsError(f"{text}: the file lies outside the data directory")
        if directory:
            if not target.is_dir():
                raise QuestsError(f"{text}: no such directory in the data directory")
        elif not target.is_file():
            raise QuestsError(f"{text}: no such file in the data directory")
    except (OSError, RuntimeError, ValueError) as exc:  # loops, long names, permissions
        raise QuestsError(f"{text}: cannot be opened ({_reason(exc)})") from None
    return target


def is_data_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a structure file the readers understand."""
    name = Path(path).name
    if name.startswith("."):
        return False
    return name.lower().endswith(DATA_SUFFIXES) or name.startswith(DATA_NAMES)


def is_md_trajectory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like an MD trajectory that needs a topology (XTC, TRR,
    DCD, Amber NetCDF)."""
    return Path(path).name.lower().endswith(MD_SUFFIXES)


def is_topology_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a topology file (PDB, GRO, PSF, LAMMPS data, Amber
    prmtop, GROMACS tpr)."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(TOPOLOGY_SUFFIXES)


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



@dataclass
class DataListing:
    """What :func:`scan_data_files` found: the listable files and the skipped entries."""

    files: list[str] = field(default_factory=list)
    #: ``(relative path, reason)`` of every entry left out: a symlink loop or a link
    #: leaving the directory, an unreadable file or folder, a name the system or the
    #: page cannot handle (too long, not UTF-8), a folder nested too deep
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: True when the listing stopped at ``max_files``
    truncated: bool = False

    def summary(self) -> str:
        """One line for the page ("" when nothing was skipped or cut)."""
        parts = []
        if self.skipped:
            n = len(self.skipped)
            parts.append(f"{n} {'entry' if n == 1 else 'entries'} of the data directory "
                         "skipped (unreadable, symlink loop, link leaving the directory, "
                         "name too long or not UTF-8; see the server log)")
        if self.truncated:
            parts.append(f"only the first {len(self.files)} files are listed")
        return "; ".join(parts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError):  # pathlib: "Symlink loop from ..."
        return "symlink loop"
    if isinstance(exc, OSError):
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENAMETOOLONG:
            return "name too long"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "not readable (permission denied)"
        return exc.strerror or type(exc).__name__
    return str(exc)


def scan_data_files(root: str | os.PathLike, max_files: int = 2000,
                    max_depth: int = 32) -> DataListing:
    """The structure files under ``root`` and the entries that had to be skipped.

    Never raises for what lies inside ``root``: a symlink loop, a link whose
    target lies outside ``root``, an unreadable file or folder, a name too long
    for the system or not valid UTF-8, or a folder deeper than ``max_depth`` is
    left out, logged and recorded in :attr:`DataListing.skipped`; the rest is
    listed. Hidden files and folders are left out silently, symlinked folders
    are not entered. Raises :class:`QuestsError` only when ``root`` itself is
    not a readable directory.
    """
    base = check_data_dir(root)
    listing = DataListing()

    def skip(rel: str, reason: str) -> None:
        listing.skipped.append((rel, reason))
        log.warning("data directory %s: skipped %r (%s)", base, rel, reason)

    stack: list[tuple[str, int]] = [("", 0)]  # (relative folder, depth): depth first, sorted
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(base / folder if folder else base) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (OSError, RuntimeError) as exc:
            if not folder:
                raise QuestsError(f"data directory {str(base)!r} cannot be read "
                                  f"({_reason(exc)})") from None
            skip(folder + "/", _reason(exc))
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            rel = f"{folder}/{name}" if folder else name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                skip(rel.encode("utf-8", "replace").decode(), "name is not valid UTF-8")
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(rel)
                    continue
                if not is_data_file(name):
                    continue
                resolve_in_dir(base, rel)
                if not os.access(entry.path, os.R_OK):
                    raise PermissionError(errno.EACCES, "permission denied")
            except QuestsError as exc:
                reason = str(exc).split(": ", 1)[-1]
                if "outside" in reason:
                    reason = "leads outside the data directory"
                elif reason.startswith("cannot be opened ("):
                    reason = reason[len("cannot be opened ("):-1]
                skip(rel, reason)
                continue
            except (OSError, RuntimeError, ValueError) as exc:
                skip(rel, _reason(exc))
                continue
            listing.files.append(rel)
            if len(listing.files) >= max_files:
                listing.truncated = True
                return listing
        for sub in reversed(subfolders):
            if depth + 1 > max_depth:
                skip(sub + "/", f"nested deeper than {max_depth} folders")
                continue
            stack.append((sub, depth + 1))
    return listing


def list_data_files(root: str | os.PathLike, max_files: int = 2000) -> list[str]:
    """Relative paths (POSIX style) of the structure files under ``root``.

    Symlinks whose target lies outside ``root`` are not listed; hidden
    directories are skipped; entries that cannot be read (symlink loops,
    permissions, names too long) are left out (see :func:`scan_data_files`).
    """
    return scan_data_files(root, max_files).files


#: Largest upload a server takes by default (MB; ``--max-upload-mb`` changes it).
MAX_UPLOAD_MB = 50.0
#: Longest stored upload name (characters; a file system allows 255 bytes).
MAX_UPLOAD_NAME = 200


def safe_upload_name(name: str) -> str:
    """A file name for an upload: its last component with odd characters replaced."""
    base = PureWindowsPath(PurePosixPath(str(name)).name).name
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    if not base:
        raise QuestsError(f"{name!r}: not a usable file name")
    if len(base) <= MAX_UPLOAD_NAME:
        return base
    # shortened in the stem: the endings (".extxyz", ".lammpstrj.gz") say the format
    suffix = "".join(PurePosixPath(base).suffixes[-2:])
    if len(suffix) > MAX_UPLOAD_NAME // 4:
        suffix = PurePosixPath(base).suffix[-(MAX_UPLOAD_NAME // 4):]
    return base[:MAX_UPLOAD_NAME - len(suffix)] + suffix


def format_mb(size: float) -> str:
    """``size`` bytes in MB for a message: ``"60.2"``, ``"50"``, ``"0.002"``."""
    mb = size / 1e6
    return f"{mb:.1f}".removesuffix(".0") if mb >= 1 else f"{mb:.3g}"


def upload_too_large_message(name: str, size: float, max_bytes: float) -> str:
    """The one line that refuses an upload of ``size`` bytes over the cap."""
    return (f"{name}: {format_mb(size)} MB is over the {format_mb(max_bytes)} MB upload limit "
            "(a file larger than the limit belongs in the data directory)")


def websocket_message_bytes(upload_mb: float) -> int:
    """The websocket message limit (bytes) ``launch.py`` sets for an upload cap: an upload
    travels base64-encoded (4/3 of the file) in one message, with room to spare."""
    return int((upload_mb * 1.4 + 10) * 1024 * 1024)


def server_message_limit(argv: list[str] | None = None) -> int:
    """The running ``panel serve``'s websocket message limit in bytes: its
    ``--websocket-max-message-size`` (read from ``argv``, default this process's command
    line) or Bokeh's default."""
    from bokeh.server.tornado import DEFAULT_WEBSOCKET_MAX_MESSAGE_SIZE_BYTES

    if argv is None:
        try:
            argv = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            import sys

            argv = list(sys.argv)
    for i, arg in enumerate(argv):
        value = None
        if arg == "--websocket-max-message-size" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--websocket-max-message-size="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                break
    return DEFAULT_WEBSOCKET_MAX_MESSAGE_SIZE_BYTES


def effective_upload_mb(max_upload_mb: float, message_bytes: int) -> float:
    """The upload cap a server with websocket message limit ``message_bytes`` can honour:
    ``max_upload_mb``, lowered where its base64 message would not fit (the server would
    drop the connection instead of answering)."""
    fits = (message_bytes - 256 * 1024) * 3 / 4 / 1e6
    return float(max(min(max_upload_mb, fits), 0.001))


def check_upload_size(name: str, size: int, max_bytes: int) -> None:
    """Refuse an upload larger than ``max_bytes`` (or empty)."""
    if size > max_bytes:
        raise QuestsError(upload_too_large_message(name, size, max_bytes))
    if size == 0:
        raise QuestsError(f"{name}: the uploaded file is empty")

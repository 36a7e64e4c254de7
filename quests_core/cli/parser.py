"""Options of the batch commands and their validation into one :class:`Settings`.

Holds the argparse value types, :func:`common_parser` (the options every batch
command shares), :func:`settings_from_args` (the one place where parsed options
become a validated :class:`~quests_core.settings.Settings`), :func:`prepare`
(what every batch command does first) and :func:`bandwidth` (h of a reference
under the settings' rule).

Invariants
----------
- Every default of a quantity that ``Settings`` defines (k, cutoff, bandwidth,
  precision, threads, chunk_atoms, seed) is read from
  :data:`quests_core.settings.DEFAULTS`; no default is written here.
- ``--bandwidth auto`` is ``bandwidth_rule="volume"``: h is the volume rule of
  the reference's frames (the atom-weighted mean volume per atom,
  :func:`quests_core.settings.frames_bandwidth`).
- A bad value gives one :class:`~quests_core.errors.QuestsError` of one line.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS, LAMMPS_TIMESTEP_FS, PRECISIONS, Settings

from .output import check_output

AUTO = "auto"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def bandwidth_arg(text: str) -> float | str:
    """argparse type of ``--bandwidth``: a positive number or ``"auto"``."""
    if text.strip().lower() == AUTO:
        return AUTO
    return positive_float(text)


def add_seed(parser: Any, help_text: str) -> None:
    """The ``--seed`` option of the commands that subsample (default ``DEFAULTS.seed``)."""
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS.seed, help=f"{help_text} (default {DEFAULTS.seed})"
    )


def common_parser() -> argparse.ArgumentParser:
    """Options shared by every batch subcommand (use as ``parents=[common_parser()]``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("descriptor and kernel options")
    g.add_argument(
        "-k",
        type=positive_int,
        default=DEFAULTS.k,
        help=f"nearest neighbours per environment (default {DEFAULTS.k})",
    )
    g.add_argument(
        "--cutoff",
        type=positive_float,
        default=DEFAULTS.cutoff,
        help=f"cutoff radius in Å (default {DEFAULTS.cutoff})",
    )
    g.add_argument(
        "--bandwidth",
        type=bandwidth_arg,
        default=DEFAULTS.bandwidth,
        help="kernel bandwidth h in 1/Å, or 'auto' for h(V) from the mean volume "
        f"per atom of the reference (default {DEFAULTS.bandwidth})",
    )
    g.add_argument(
        "--species", default=None, help="comma-separated species for the multicomponent descriptor"
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULTS.precision,
        help=f"precision of the kernel sums (default {DEFAULTS.precision})",
    )
    g = p.add_argument_group("input options")
    g.add_argument(
        "--index",
        default=":",
        help="frames of every file, 'start:stop:step' or an integer (default ':')",
    )
    g.add_argument("--format", default=None, help="ASE format name (default: detected)")
    g.add_argument(
        "--type-map",
        default=None,
        help="LAMMPS types to elements, e.g. 'Cu,Ni' or '1=Cu,2=Ni'; or, for the topology "
        "of an XTC/TRR/DCD/NetCDF trajectory, atom names (else types) to elements, e.g. "
        "'MW=O' to keep TIP4P virtual sites or 'N1A=N,N2A=N' (name=element)",
    )
    g.add_argument(
        "--topology",
        default=None,
        metavar="PATH",
        help="topology (PDB/GRO/PSF/LAMMPS data/prmtop/tpr) naming the atoms of "
        "XTC/TRR/DCD/NetCDF trajectories (default: the file with the trajectory's stem next "
        "to it); virtual sites (mass 0, e.g. TIP4P's MW) are left out with a warning",
    )
    g.add_argument(
        "--topology-format",
        default=None,
        metavar="FMT",
        help="MDAnalysis format of the --topology file when its extension does not say it: "
        "PRMTOP, TOP (an Amber .top), PSF, GRO, PDB, TPR, DATA, ... (default: from the "
        "extension)",
    )
    g.add_argument(
        "--time-step",
        type=positive_float,
        default=None,
        help="ps between frames, when the files carry no time",
    )
    g.add_argument(
        "--lammps-timestep-fs",
        type=positive_float,
        default=LAMMPS_TIMESTEP_FS,
        metavar="FS",
        help="length of one MD step (fs) for files that record step numbers, not times "
        f"(LAMMPS dumps): time = step x FS (default {LAMMPS_TIMESTEP_FS:g}, the LAMMPS "
        "metal-units default)",
    )
    g.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or invalid files of a batch and list them",
    )
    g = p.add_argument_group("run options")
    g.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULTS.threads,
        help="threads for descriptors and kernels (default: all cores)",
    )
    g.add_argument(
        "-o",
        "--output",
        default=None,
        help="write the result; format by extension (.json, .csv, .parquet; "
        "see the command for others)",
    )
    g.add_argument(
        "--cache-dir",
        default=None,
        help="descriptor cache directory (default $QUESTS_CACHE_DIR or ~/.cache/quests-dashboard)",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    g.add_argument(
        "--chunk-atoms",
        type=positive_int,
        default=DEFAULTS.chunk_atoms,
        help=f"atoms per descriptor batch while streaming (default {DEFAULTS.chunk_atoms})",
    )
    g.add_argument(
        "--no-progress", "-q", "--quiet", action="store_true", help="no progress bars"
    )
    g.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The validated :class:`Settings` of parsed common options.

    Raises
    ------
    QuestsError
        One line, when a value is outside the engine's bounds (e.g. ``-k 10000``).
    """
    auto = args.bandwidth == AUTO
    try:
        return Settings(
            k=args.k,
            cutoff=args.cutoff,
            species=args.species,
            bandwidth=DEFAULTS.bandwidth if auto else args.bandwidth,
            bandwidth_rule="volume" if auto else "fixed",
            precision=args.precision,
            threads=args.threads,
            chunk_atoms=args.chunk_atoms,
            seed=getattr(args, "seed", DEFAULTS.seed),
        )
    except QuestsError as exc:
        raise QuestsError(" ".join(str(exc).split())) from None


def prepare(args: argparse.Namespace) -> tuple[Settings, str | None]:
    """What every batch command does first: settings, ``--output`` check, thread count.

    Returns the settings and the lower-case extension of ``--output`` (None without it).
    """
    settings = settings_from_args(args)
    suffix = check_output(args)
    if settings.threads:
        import quests_core as qc

        qc.set_num_threads(settings.threads)
    return settings, suffix


def bandwidth(settings: Settings, dataset: Any) -> float:
    """h against the reference ``dataset``: the fixed value or the volume rule of its frames.

    ``dataset`` is None for a reference given as descriptor files: then only a
    fixed bandwidth is possible (the files hold no cell volumes).
    """
    if dataset is None:
        if settings.bandwidth_rule != "fixed":
            raise QuestsError(
                "--bandwidth auto needs the reference structures: descriptor files hold no "
                "cell volumes (give --bandwidth H)"
            )
        return settings.bandwidth
    return settings.resolve_bandwidth(dataset.frames, source=f"{dataset.name}: --bandwidth auto")


def species_list(settings: Settings) -> list[str] | None:
    """The species of the settings as the engine's list (None for the single-component one):
    :meth:`Settings.descriptor_kwargs`'s, the one conversion."""
    return settings.species_list


def add_reference_options(parser: Any, *, required: bool, help_text: str, of: str) -> None:
    """``-r/--reference FILE...`` and ``--reference-index`` (``of``: what ``--index`` selects)."""
    parser.add_argument(
        "-r", "--reference", nargs="+", required=required, default=None, help=help_text
    )
    parser.add_argument(
        "--reference-index",
        default=":",
        help=f"frames of the reference files (default ':'; --index is for the {of})",
    )


def batch_parser(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    *,
    help: str,
    description: str,
    files: str | None = "structure files",
) -> argparse.ArgumentParser:
    """A batch subcommand with the common options and, unless ``files`` is None, ``FILE...``."""
    p = sub.add_parser(name, parents=[common], help=help, description=description)
    if files is not None:
        p.add_argument("files", nargs="+", help=files)
    return p


def override_option(parser: argparse.ArgumentParser, dest: str, default: Any, help: str) -> None:
    """Give option ``dest`` of ``parser`` another default and help.

    Only for a parser built on its own :func:`common_parser` copy: parents share
    their actions with every subcommand built on them.
    """
    for action in parser._actions:
        if action.dest == dest:
            action.default, action.help = default, help
            return
    raise KeyError(dest)


def default_of(function: Any, parameter: str) -> Any:
    """The default of ``function``'s ``parameter`` (an option's default owned by the engine)."""
    import inspect

    return inspect.signature(function).parameters[parameter].default

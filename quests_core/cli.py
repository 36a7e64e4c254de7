"""The ``quests-dashboard`` command line: batch QUESTS analyses of structure files.

Subcommands::

    descriptors     descriptors of every atom (cached on disk)
    entropy         information entropy H and diversity D per file or label
    dh              dH of test environments against a reference (--approx for ANN)
    overlap         overlap matrix between files or labels
    learning-curve  H of random subsets and the information gap
    trajectory      per-frame H, mean dH and fraction dH > 0 along a trajectory
    serve           start the dashboard

Common options: ``-k``, ``--cutoff``, ``--bandwidth``, ``--index``,
``--threads``, ``--output`` (format by extension). Bad input gives a one-line
error naming the file and frame and exit status 1 (``--debug`` shows the
traceback); ``--skip-bad`` processes the remaining files of a batch and lists
the bad ones. Unexpected internal errors give exit status 3. The incomplete
last frame of a multi-frame file that is still being written is skipped with a
one-line warning (see :class:`quests_core.io.TruncatedFrameWarning`).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

__all__ = ["Loaded", "build_parser", "common_parser", "load_files", "main"]

DEFAULT_K = 32
DEFAULT_CUTOFF = 5.0
DEFAULT_BANDWIDTH = 0.015
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
_MAX_PRINT_ROWS = 40


# ----------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _bandwidth_arg(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_float(text)


def common_parser() -> argparse.ArgumentParser:
    """Options shared by every batch subcommand (use as ``parents=[common_parser()]``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("descriptor and kernel options")
    g.add_argument(
        "-k",
        type=_positive_int,
        default=DEFAULT_K,
        help=f"nearest neighbours per environment (default {DEFAULT_K})",
    )
    g.add_argument(
        "--cutoff",
        type=_positive_float,
        default=DEFAULT_CUTOFF,
        help=f"cutoff radius in Å (default {DEFAULT_CUTOFF})",
    )
    g.add_argument(
        "--bandwidth",
        type=_bandwidth_arg,
        default=DEFAULT_BANDWIDTH,
        help="kernel bandwidth h in 1/Å, or 'auto' for h(V) from the volume "
        f"per atom (default {DEFAULT_BANDWIDTH})",
    )
    g.add_argument(
        "--species", default=None, help="comma-separated species for the multicomponent descriptor"
    )
    g.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default="float64",
        help="precision of the kernel sums (default float64)",
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
        help="LAMMPS dump types to elements, e.g. 'Cu,Ni' or '1=Cu,2=Ni'",
    )
    g.add_argument(
        "--time-step",
        type=_positive_float,
        default=None,
        help="ps between frames, when the files carry no time",
    )
    g.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or invalid files of a batch and list them",
    )
    g = p.add_argument_group("run options")
    g.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
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
        type=_positive_int,
        default=20_000,
        help="atoms per descriptor batch while streaming (default 20000)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full ``quests-dashboard`` parser (analysis subcommands included when present)."""
    parser = argparse.ArgumentParser(
        prog="quests-dashboard",
        description="QUESTS information entropy, dH and overlap of atomistic data.",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    from quests_core import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_parser()

    p = sub.add_parser(
        "descriptors",
        parents=[common],
        help="descriptors of every atom",
        description="Compute (or load from the cache) the descriptors of every "
        "atom. --output: .npy (array), .csv/.parquet (per-atom "
        "table), .json (per-file summary).",
    )
    p.add_argument("files", nargs="+", help="structure files")
    p.set_defaults(func=cmd_descriptors, outputs=(".npy", ".csv", ".parquet", ".pq", ".json"))

    p = sub.add_parser(
        "entropy",
        parents=[common],
        help="entropy H and diversity D",
        description="Information entropy H and diversity D of each file, or of "
        "each value of a per-frame column (--by).",
    )
    p.add_argument("files", nargs="+", help="structure files")
    p.add_argument(
        "--by", default=None, help="group by a per-frame column (label, generation, source, ...)"
    )
    p.set_defaults(func=cmd_entropy, outputs=(".csv", ".parquet", ".pq", ".json"))

    p = sub.add_parser(
        "dh",
        parents=[common],
        help="dH of test data against a reference",
        description="Differential entropy dH of every test environment with "
        "respect to the reference. --output: .csv/.parquet/.json "
        "(per-atom table) or .extxyz (structures with a dH array).",
    )
    p.add_argument("files", nargs="+", help="test structure files")
    p.add_argument("-r", "--reference", nargs="+", required=True, help="reference files")
    p.add_argument(
        "--reference-index",
        default=":",
        help="frames of the reference files (default ':'; --index is for the test files)",
    )
    p.add_argument(
        "--approx",
        action="store_true",
        help="approximate dH from nearest neighbours (an upper bound)",
    )
    p.add_argument(
        "--n-neighbors",
        type=_positive_int,
        default=5,
        help="reference neighbours per test point with --approx (default 5)",
    )
    g = p.add_argument_group(
        "out-of-core options",
        "With --store the test files are read and computed chunk by chunk into a resumable "
        "Parquet store (for trajectories larger than memory); run the same command again to "
        "resume after an interruption. --output then writes the per-frame table.",
    )
    g.add_argument("--store", default=None, metavar="DIR", help="chunk store directory")
    g.add_argument(
        "--chunk-frames",
        type=_positive_int,
        default=16,
        help="frames per chunk with --store (default 16)",
    )
    g.add_argument(
        "--block-atoms",
        type=_positive_int,
        default=1_000_000,
        help="atoms whose descriptors are held at once with --store; big frames are split "
        "into blocks of this many atoms (default 1000000)",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="compute the chunks on a dask.distributed scheduler (e.g. tcp://host:8786, or 'local' "
        "for a LocalCluster on this machine); "
        "its workers must see the files and the store",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="discard the store's contents instead of resuming"
    )
    g.add_argument(
        "--save-descriptors",
        action="store_true",
        help="also keep each chunk's descriptors in the store (.npy)",
    )
    p.set_defaults(func=cmd_dh, outputs=(".csv", ".parquet", ".pq", ".json", ".extxyz", ".xyz"))

    p = sub.add_parser(
        "overlap",
        parents=[common],
        help="overlap matrix of files or labels",
        description="Overlap (fraction of row environments with dH <= 0 "
        "against the column) for every ordered pair of files or of "
        "values of --by.",
    )
    p.add_argument("files", nargs="+", help="structure files")
    p.add_argument("--by", default=None, help="group by a per-frame column instead of by file")
    p.set_defaults(func=cmd_overlap, outputs=(".csv", ".parquet", ".pq", ".json"))

    p = sub.add_parser(
        "learning-curve",
        parents=[common],
        help="entropy of random subsets and the information gap",
        description="H of random subsets of the environments for increasing "
        "sizes, the asymptote fit a - b exp(-c (log N)^2) and the "
        "information gap.",
    )
    p.add_argument("files", nargs="+", help="structure files (combined)")
    p.add_argument(
        "--sizes", default=None, help="comma-separated subset sizes (default: log-spaced up to all)"
    )
    p.add_argument(
        "--points",
        type=_positive_int,
        default=15,
        help="number of log-spaced sizes when --sizes is not given (default 15)",
    )
    p.add_argument("--repeats", type=_positive_int, default=5, help="subsets per size")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_learning_curve, outputs=(".csv", ".parquet", ".pq", ".json"))

    p = sub.add_parser(
        "trajectory",
        parents=[common],
        help="per-frame H and dH of a trajectory",
        description="Per-frame entropy H, mean dH against a reference (default: "
        "the first selected frame) and the fraction of atoms with "
        "dH > 0. --output: .csv/.parquet/.json (per-frame table) or "
        ".extxyz (frames with a per-atom dH array).",
    )
    p.add_argument("file", help="trajectory file")
    p.add_argument(
        "-r",
        "--reference",
        nargs="+",
        default=None,
        help="reference files (default: the first frame)",
    )
    p.add_argument(
        "--reference-index",
        default=":",
        help="frames of the reference files (default ':'; --index is for the trajectory)",
    )
    g = p.add_argument_group(
        "per-frame H",
        "H costs n^2 kernel pairs per frame. Frames above --exact-max-atoms atoms get an "
        "estimate from a random sample of atoms against all atoms of the frame, with its "
        "standard error in the column H_stderr (0 for exact frames).",
    )
    g.add_argument(
        "--exact-entropy",
        action="store_true",
        help="exact H for every frame, whatever its size (the expected time is printed first)",
    )
    g.add_argument(
        "--exact-max-atoms",
        type=_positive_int,
        default=None,
        help="largest frame whose H is exact (default $QUESTS_EXACT_ENTROPY_MAX_ATOMS or 40000)",
    )
    g.add_argument(
        "--entropy-stderr",
        type=_positive_float,
        default=0.005,
        help="standard error (nats) aimed at by sampled H, within 20000 sampled atoms "
        "per frame (default 0.005)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the sampled H (default 0)")
    p.set_defaults(
        func=cmd_trajectory, outputs=(".csv", ".parquet", ".pq", ".json", ".extxyz", ".xyz")
    )

    p = sub.add_parser(
        "serve",
        add_help=False,
        help="start the dashboard",
        description="Start the dashboard; the arguments go to it.",
    )
    p.add_argument("serve_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_serve)

    _register_analysis(sub)
    return parser


def _register_analysis(subparsers: Any) -> None:
    """Add the analysis subcommands of ``quests_core.analysis.commands`` when it exists."""
    try:
        module = importlib.import_module("quests_core.analysis.commands")
    except ModuleNotFoundError as exc:
        if exc.name in ("quests_core.analysis", "quests_core.analysis.commands"):
            return
        raise
    module.register(subparsers)


# ----------------------------------------------------------------------------
# Loading with the cache
# ----------------------------------------------------------------------------


@dataclass
class Loaded:
    """Descriptors and per-frame table of one input file."""

    path: str
    dataset: Any
    x: np.ndarray
    from_cache: bool
    seconds: float
    key: str | None = None


@dataclass
class Batch:
    """The files of a batch that loaded, and the ones skipped with ``--skip-bad``."""

    items: list[Loaded]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _progress_bar(args: argparse.Namespace, **kwargs: Any):
    from tqdm.auto import tqdm

    disable = True if getattr(args, "no_progress", False) else None
    return tqdm(disable=disable, file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)


def _kernel_progress(args: argparse.Namespace, desc: str) -> tuple[Any, Callable[[int, int], None]]:
    bar = _progress_bar(args, desc=desc, unit="row")

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return bar, update


def _species(args: argparse.Namespace) -> list[str] | None:
    if not getattr(args, "species", None):
        return None
    return [s for s in args.species.replace(",", " ").split() if s]


def _cache(args: argparse.Namespace):
    if getattr(args, "no_cache", False):
        return None
    from quests_core.cache import DescriptorCache

    return DescriptorCache(args.cache_dir)


def _located(compute: Callable[..., Any]) -> Callable[..., Any]:
    """``compute`` whose errors about a structure name its file and frame."""
    from quests_core.io import locate_error

    def run(structures, k=DEFAULT_K, cutoff=DEFAULT_CUTOFF, species=None):
        try:
            return compute(structures, k=k, cutoff=cutoff, species=species)
        except QuestsError as exc:
            raise locate_error(exc, structures) from None

    return run


def load_files(
    paths: Sequence[str], args: argparse.Namespace, role: str = "input", index: str | None = None
) -> Batch:
    """Descriptors of every file (streamed, cached), honouring ``--skip-bad``.

    ``index`` overrides ``--index`` (used for reference files).

    Raises
    ------
    QuestsError
        For the first bad file without ``--skip-bad``, or when no file is usable.
    """
    import quests_core as qc
    from quests_core.cache import file_descriptors

    cache = _cache(args)
    compute = _located(functools.partial(qc.descriptors, n_threads=args.threads))
    batch = Batch([])
    for path in paths:
        bar = _progress_bar(args, desc=f"{Path(path).name}", unit=" atoms", unit_scale=True)
        start = time.perf_counter()

        def progress(frames: int, atoms: int, bar=bar) -> None:
            bar.set_postfix_str(f"{frames} frames", refresh=False)
            bar.update(atoms - bar.n)

        try:
            res = file_descriptors(
                path,
                index=args.index if index is None else index,
                format=args.format,
                type_map=args.type_map,
                k=args.k,
                cutoff=args.cutoff,
                species=_species(args),
                compute=compute,
                cache=cache,
                chunk_atoms=args.chunk_atoms,
                time_step=args.time_step,
                progress=progress,
            )
        except QuestsError as exc:
            bar.close()
            from quests_core.io import locate_error

            if exc.index is not None:  # about a structure of this file: name the file
                exc = locate_error(exc, source=path)
            if not args.skip_bad:
                raise exc from None
            batch.skipped.append((path, str(exc)))
            continue
        bar.close()
        batch.items.append(
            Loaded(
                path,
                res.dataset,
                res.descriptors,
                res.from_cache,
                time.perf_counter() - start,
                res.key,
            )
        )
    if not batch.items:
        raise QuestsError(f"no usable {role} files ({len(batch.skipped)} skipped)")
    return batch


def _combined(items: Sequence[Loaded]) -> tuple[Any, np.ndarray]:
    from quests_core.dataset import concat

    if len(items) == 1:
        return items[0].dataset, np.asarray(items[0].x)
    return concat([it.dataset for it in items]), np.concatenate([it.x for it in items])


def _groups(batch: Batch, by: str | None) -> list[tuple[str, Any, np.ndarray]]:
    """``(name, dataset, descriptors)`` per file, or per value of the column ``by``."""
    if by is None:
        names = [Path(it.path).name for it in batch.items]
        if len(set(names)) < len(names):
            names = [it.path for it in batch.items]
        return [(n, it.dataset, np.asarray(it.x)) for n, it in zip(names, batch.items, strict=True)]
    dataset, x = _combined(batch.items)
    if by not in dataset.frames:
        raise QuestsError(f"no per-frame column {by!r} (have {', '.join(dataset.frames.columns)})")
    per_atom = dataset.frames[by].to_numpy()[dataset.atom_structure_index()]
    out = []
    for value, part in dataset.split_by(by).items():
        mask = per_atom == value if not pd.isna(value) else pd.isna(per_atom)
        out.append((str(value), part, x[mask]))
    return out


def _bandwidth(args: argparse.Namespace, dataset: Any) -> float:
    if args.bandwidth != "auto":
        return float(args.bandwidth)
    import quests_core as qc

    volumes = dataset.frames["volume_per_atom"].to_numpy(dtype=float)
    volumes = volumes[np.isfinite(volumes)]
    if volumes.size == 0:
        raise QuestsError(
            f"--bandwidth auto needs a periodic cell (volume per atom) in {dataset.name!r}"
        )
    return float(qc.bandwidth_from_volume(float(np.median(volumes))))


def _kernel_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"n_threads": args.threads, "precision": args.precision}


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------


def _check_output(args: argparse.Namespace) -> str | None:
    """Validate ``--output`` before any work; returns its lower-case extension."""
    if not args.output:
        return None
    suffix = Path(args.output).suffix.lower()
    allowed = getattr(args, "outputs", ())
    if suffix not in allowed:
        raise QuestsError(
            f"unsupported output extension {suffix or '(none)'!r} for '{args.command}'; use "
            + ", ".join(allowed),
            source=args.output,
        )
    parent = Path(args.output).resolve().parent
    if not parent.is_dir():
        raise QuestsError("output directory does not exist", source=args.output)
    return suffix


def _format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def _print_summary(summary: dict[str, Any]) -> None:
    width = max((len(k) for k in summary), default=0)
    for key, value in summary.items():
        if isinstance(value, (dict, list)) and key in ("skipped", "matrix"):
            continue
        print(f"{key:<{width}}  {_format_value(value)}")


def _print_table(table: pd.DataFrame, index: bool = False) -> None:
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.6g}".format
    ):
        if len(table) > _MAX_PRINT_ROWS:
            print(table.head(_MAX_PRINT_ROWS).to_string(index=index))
            print(f"... {len(table)} rows in total (use --output to save them all)")
        else:
            print(table.to_string(index=index))


def _finish(
    args: argparse.Namespace,
    batch_skipped: Sequence[tuple[str, str]],
    summary: dict[str, Any],
    table: pd.DataFrame | None,
    *,
    index: bool = False,
    show_table: bool = True,
) -> int:
    from quests_core.export import write_result

    if batch_skipped:
        summary["skipped"] = [{"file": f, "error": e} for f, e in batch_skipped]
    _print_summary(summary)
    if table is not None and show_table:
        print()
        _print_table(table, index=index)
    if args.output and Path(args.output).suffix.lower() in (".json", ".csv", ".parquet", ".pq"):
        write_result(args.output, table, summary, index=index)
        print(f"wrote {args.output}", file=sys.stderr)
    if batch_skipped:
        print(f"skipped {len(batch_skipped)} bad file(s):", file=sys.stderr)
        for f, e in batch_skipped:
            print(f"  {e}" if f in e else f"  {f}: {e}", file=sys.stderr)
    return EXIT_OK


def _source_column(dataset: Any) -> np.ndarray:
    return dataset.frames["source"].to_numpy()[dataset.atom_structure_index()]


# ----------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------


def _setup(args: argparse.Namespace) -> str | None:
    suffix = _check_output(args)
    if args.threads:
        import quests_core as qc

        qc.set_num_threads(args.threads)
    return suffix


def cmd_descriptors(args: argparse.Namespace) -> int:
    """``descriptors FILE...``"""
    suffix = _setup(args)
    batch = load_files(args.files, args)
    rows = []
    for it in batch.items:
        rows.append(
            {
                "file": it.path,
                "frames": len(it.dataset),
                "atoms": it.dataset.n_atoms,
                "dimension": int(it.x.shape[1]),
                "from_cache": it.from_cache,
                "seconds": round(it.seconds, 4),
            }
        )
    table = pd.DataFrame(rows)
    summary = {
        "files": len(batch.items),
        "atoms": int(table["atoms"].sum()),
        "dimension": int(batch.items[0].x.shape[1]),
        "k": args.k,
        "cutoff": args.cutoff,
    }
    if suffix == ".npy":
        _write_npy(args.output, [it.x for it in batch.items])
        print(f"wrote {args.output}", file=sys.stderr)
        return _finish(args, batch.skipped, summary, table)
    if suffix in (".csv", ".parquet", ".pq"):
        from quests_core.export import write_table

        dataset, x = _combined(batch.items)
        atoms = dataset.atoms_table(positions=False)
        atoms.insert(0, "source", _source_column(dataset))
        desc = pd.DataFrame(np.asarray(x), columns=[f"d{i}" for i in range(x.shape[1])])
        write_table(pd.concat([atoms, desc], axis=1), args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        args = argparse.Namespace(**{**vars(args), "output": None})
    return _finish(args, batch.skipped, summary, table)


def _write_npy(path: str, arrays: Sequence[np.ndarray]) -> None:
    from numpy.lib.format import open_memmap

    from quests_core.export import _atomic_path

    total = sum(a.shape[0] for a in arrays)
    width = arrays[0].shape[1]
    with _atomic_path(path) as tmp:
        out = open_memmap(tmp, mode="w+", dtype=arrays[0].dtype, shape=(total, width))
        row = 0
        for a in arrays:
            out[row : row + len(a)] = a
            row += len(a)
        out.flush()
        del out


def cmd_entropy(args: argparse.Namespace) -> int:
    """``entropy FILE... [--by COLUMN]``"""
    from scipy.special import logsumexp

    import quests_core as qc

    _setup(args)
    batch = load_files(args.files, args)
    rows = []
    for name, dataset, x in _groups(batch, args.by):
        h = _bandwidth(args, dataset)
        bar, progress = _kernel_progress(args, f"H {name}")
        try:
            H, dh = qc.entropy_and_delta(x, h, progress=progress, **_kernel_kwargs(args))
        finally:
            bar.close()
        rows.append(
            {
                "group": name,
                "structures": len(dataset),
                "atoms": int(x.shape[0]),
                "H": float(H),
                "D": float(logsumexp(np.asarray(dh))),
                "log_n": float(np.log(x.shape[0])),
                "bandwidth": h,
            }
        )
    table = pd.DataFrame(rows)
    summary = {"groups": len(rows), "by": args.by or "file", "k": args.k, "cutoff": args.cutoff}
    return _finish(args, batch.skipped, summary, table)


def cmd_dh(args: argparse.Namespace) -> int:
    """``dh TEST... --reference REF... [--approx]``"""

    suffix = _setup(args)
    if args.store:
        return _dh_store(args, suffix)
    test = load_files(args.files, args, role="test")
    ref = load_files(args.reference, args, role="reference", index=args.reference_index)
    test_ds, y = _combined(test.items)
    ref_ds, x = _combined(ref.items)
    h = _bandwidth(args, ref_ds)
    method = f"approximate ({args.n_neighbors} neighbours)" if args.approx else "exact"
    cache, rkey, dh = _cache(args), None, None
    if cache is not None and all(it.key for it in test.items + ref.items):
        from quests_core.cache import result_key

        rkey = result_key(
            "dH",
            test=[it.key for it in test.items],
            reference=[it.key for it in ref.items],
            bandwidth=repr(h),
            method=method,
            precision=args.precision,
        )
        cached = cache.get_table(rkey)
        if cached is not None and len(cached) == len(y):
            dh = cached["dH"].to_numpy(dtype=float)
    from_cache = dh is not None
    if dh is None:
        dh = _compute_dh(args, y, x, h)
    table = test_ds.atoms_table(positions=False)
    if cache is not None and rkey is not None and not from_cache:
        cache.put_table(rkey, table[["structure", "frame", "atom"]].assign(dH=dh))
    table.insert(0, "source", _source_column(test_ds))
    table["dH"] = dh
    summary = {
        "dH_from_cache": from_cache,
        "test_atoms": int(len(y)),
        "reference_atoms": int(len(x)),
        "bandwidth": h,
        "method": method,
        "mean_dH": float(dh.mean()),
        "max_dH": float(dh.max()),
        "min_dH": float(dh.min()),
        "overlap": float(np.mean(dh <= 0)),
        "novelty": float(np.mean(dh > 0)),
    }
    if suffix in (".extxyz", ".xyz"):
        from quests_core.export import export_dataset

        test_ds.set_array("dH", dh)
        export_dataset(test_ds, args.output, arrays=["dH"])
        print(f"wrote {args.output}", file=sys.stderr)
    return _finish(args, test.skipped + ref.skipped, summary, table, show_table=False)


def _dh_store(args: argparse.Namespace, suffix: str | None) -> int:
    """``dh TEST... --reference REF... --store DIR``: chunked, resumable, optionally on Dask."""
    from quests_core.chunked import chunked_delta_entropy

    if args.approx:
        raise QuestsError("--approx cannot be combined with --store (the store holds exact dH)")
    if suffix in (".extxyz", ".xyz"):
        raise QuestsError(
            "with --store, --output writes the per-frame table: use .csv, .parquet or .json",
            source=args.output,
        )
    if args.skip_bad:
        raise QuestsError("--skip-bad cannot be combined with --store (a store is one run)")
    ref = load_files(args.reference, args, role="reference", index=args.reference_index)
    ref_ds, x = _combined(ref.items)
    h = _bandwidth(args, ref_ds)
    bar = _progress_bar(args, desc="dH chunks", unit=" frames")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        run = chunked_delta_entropy(
            args.files,
            x,
            args.store,
            h,
            k=args.k,
            cutoff=args.cutoff,
            species=_species(args),
            index=args.index,
            format=args.format,
            type_map=args.type_map,
            chunk_frames=args.chunk_frames,
            block_atoms=args.block_atoms,
            precision=args.precision,
            time_step=args.time_step,
            save_descriptors=args.save_descriptors,
            overwrite=args.overwrite,
            n_threads=args.threads,
            client=args.scheduler,
            progress=progress,
        )
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: the finished chunks are kept in {args.store}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    finally:
        bar.close()
    frames = run.store.frames()
    n_atoms = frames["n_atoms"].to_numpy(np.int64)
    summary = {
        "store": str(run.store.path),
        "chunks_computed": len(run.computed),
        "chunks_resumed": len(run.skipped),
        "complete": run.complete,
        "frames": int(len(frames)),
        "test_atoms": int(n_atoms.sum()),
        "reference_atoms": int(len(x)),
        "bandwidth": h,
        "precision": args.precision,
        "mean_dH": float(np.average(frames["mean_dH"], weights=n_atoms)),
        "max_dH": float(frames["max_dH"].max()),
        "novelty": float(np.average(frames["frac_novel"], weights=n_atoms)),
        "seconds": round(run.seconds, 3),
    }
    shown = [c for c in _STORE_FRAME_COLUMNS if c in frames]
    return _finish(args, ref.skipped, summary, frames[shown])


#: per-frame columns printed and written by ``dh --store`` (the store keeps all of them)
_STORE_FRAME_COLUMNS = (
    "structure", "source", "frame", "time", "n_atoms", "temperature", "mean_dH", "frac_novel",
    "max_dH",
)


def _compute_dh(args: argparse.Namespace, y: np.ndarray, x: np.ndarray, h: float) -> np.ndarray:
    import quests_core as qc

    if args.approx:
        dh = qc.approx_delta_entropy(y, x, h, n_neighbors=args.n_neighbors, n_threads=args.threads)
    else:
        bar, progress = _kernel_progress(args, "dH")
        try:
            dh = qc.delta_entropy(y, x, h, progress=progress, **_kernel_kwargs(args))
        finally:
            bar.close()
    return np.asarray(dh, dtype=float)


def cmd_overlap(args: argparse.Namespace) -> int:
    """``overlap FILE... [--by COLUMN]``"""
    import quests_core as qc

    _setup(args)
    batch = load_files(args.files, args)
    groups = _groups(batch, args.by)
    names = [g[0] for g in groups]
    matrix = np.empty((len(groups), len(groups)))
    bar = _progress_bar(args, desc="overlap", total=len(groups) ** 2, unit="pair")
    try:
        for j, (_, ref_ds, x) in enumerate(groups):
            h = _bandwidth(args, ref_ds)
            for i, (_, _, y) in enumerate(groups):
                matrix[i, j] = float(qc.overlap(y, x, h, **_kernel_kwargs(args)))
                bar.update(1)
    finally:
        bar.close()
    table = pd.DataFrame(matrix, index=pd.Index(names, name="test/reference"), columns=names)
    summary = {
        "groups": len(names),
        "by": args.by or "file",
        "labels": names,
        "matrix": matrix.tolist(),
        "meaning": "row i, column j: fraction of environments of i with dH(i | j) <= 0",
    }
    return _finish(args, batch.skipped, summary, table, index=True)


def _parse_sizes(text: str | None) -> np.ndarray | None:
    if text is None:
        return None
    try:
        sizes = np.array([int(s) for s in text.replace(",", " ").split()], dtype=int)
    except ValueError:
        raise QuestsError(f"--sizes {text!r}: expected comma-separated integers") from None
    if sizes.size == 0:
        raise QuestsError("--sizes is empty")
    return np.unique(sizes)


def cmd_learning_curve(args: argparse.Namespace) -> int:
    """``learning-curve FILE... [--sizes ...] [--repeats R] [--seed S]``"""
    import quests_core as qc
    from quests_core.learning import default_sizes

    _setup(args)
    batch = load_files(args.files, args)
    dataset, x = _combined(batch.items)
    h = _bandwidth(args, dataset)
    sizes = _parse_sizes(args.sizes)
    if sizes is None:
        sizes = default_sizes(len(x), points=args.points)
    bar, progress = _kernel_progress(args, "learning curve")
    bar.unit = "subset"
    try:
        curve = qc.learning_curve(
            x,
            sizes,
            h=h,
            repeats=args.repeats,
            seed=args.seed,
            progress=progress,
            **_kernel_kwargs(args),
        )
    finally:
        bar.close()
    table = pd.DataFrame(
        {
            "size": curve.sizes,
            "log_n": curve.log_n,
            "H_mean": curve.mean,
            "H_std": curve.std,
        }
    )
    summary: dict[str, Any] = {
        "environments": int(len(x)),
        "bandwidth": h,
        "repeats": args.repeats,
        "seed": args.seed,
    }
    try:
        fit = qc.fit_asymptote(curve.sizes, curve.mean)
    except QuestsError as exc:
        summary["fit"] = f"failed: {exc}"
    else:
        table["gap"] = fit.gap
        summary.update(
            {
                "asymptote_a": fit.a,
                "a_err": fit.a_err,
                "b": fit.b,
                "c": fit.c,
                "gap_at_full_size": float(fit.gap[-1]),
            }
        )
    return _finish(args, batch.skipped, summary, table)


def cmd_trajectory(args: argparse.Namespace) -> int:
    """``trajectory FILE [--reference REF...]``"""
    import quests_core as qc

    suffix = _setup(args)
    traj = load_files([args.file], args)
    item = traj.items[0]
    dataset, x = item.dataset, np.asarray(item.x)
    frames = dataset.frames
    offsets = frames["atom_offset"].to_numpy()
    counts = frames["n_atoms"].to_numpy()
    skipped = list(traj.skipped)
    if args.reference:
        ref = load_files(args.reference, args, role="reference", index=args.reference_index)
        ref_ds, ref_x = _combined(ref.items)
        skipped += ref.skipped
        reference = ", ".join(it.path for it in ref.items)
    else:
        ref_ds = dataset.subset([0])
        ref_x = x[offsets[0] : offsets[0] + counts[0]]
        reference = f"first frame (frame {int(frames['frame'].iat[0])})"
    h_ref = _bandwidth(args, ref_ds)
    from quests_core.sampling import exact_max_atoms, frame_entropy, measure_pair_rate

    threshold = exact_max_atoms(args.exact_max_atoms)
    big = counts > threshold
    if args.exact_entropy and big.any():
        largest = int(np.argmax(counts))
        xl = x[offsets[largest] : offsets[largest] + counts[largest]]
        rate = measure_pair_rate(xl, h_ref, rows=4096, **_kernel_kwargs(args))
        pairs = float(np.sum(counts.astype(np.float64) ** 2))
        print(
            f"--exact-entropy: {pairs:.3g} kernel pairs for H of {len(frames)} frame(s) "
            f"(n^2 per frame); expected {_duration(pairs / rate)} at the measured "
            f"{rate:.3g} pairs/s",
            file=sys.stderr,
            flush=True,
        )
    H = np.empty(len(frames))
    H_err = np.zeros(len(frames))
    H_rows = np.zeros(len(frames), dtype=np.int64)
    mean_dh = np.empty(len(frames))
    frac = np.empty(len(frames))
    per_atom = np.empty(len(x)) if suffix in (".extxyz", ".xyz") else None
    bar = _progress_bar(args, desc="frames", total=len(frames), unit="frame")
    try:
        for i, (start, n) in enumerate(zip(offsets, counts, strict=True)):
            xf = x[start : start + n]
            h_frame = _bandwidth(args, dataset.subset([i])) if args.bandwidth == "auto" else h_ref
            hbar, hprog = _kernel_progress(args, f"H frame {i}")
            try:
                est = frame_entropy(
                    xf,
                    h_frame,
                    exact=args.exact_entropy,
                    threshold=threshold,
                    target_stderr=args.entropy_stderr,
                    seed=(args.seed, i),
                    progress=hprog,
                    **_kernel_kwargs(args),
                )
            finally:
                hbar.close()
            H[i], H_err[i], H_rows[i] = float(est.H), float(est.stderr), est.m
            dbar, dprog = _kernel_progress(args, f"dH frame {i}")
            try:
                dh = np.asarray(
                    qc.delta_entropy(xf, ref_x, h_ref, progress=dprog, **_kernel_kwargs(args))
                )
            finally:
                dbar.close()
            mean_dh[i] = float(dh.mean())
            frac[i] = float(np.mean(dh > 0))
            if per_atom is not None:
                per_atom[start : start + n] = dh
            bar.update(1)
    finally:
        bar.close()
    table = frames[["structure", "source", "frame", "time", "n_atoms", "temperature"]].copy()
    table["H"] = H
    table["H_stderr"] = H_err
    table["mean_dH"] = mean_dh
    table["frac_novel"] = frac
    summary = {
        "frames": len(frames),
        "reference": reference,
        "bandwidth": h_ref,
        "H_method": _h_method(H_rows, counts, threshold, args),
        "H_first": float(H[0]),
        "H_last": float(H[-1]),
        "mean_dH_last": float(mean_dh[-1]),
        "frac_novel_max": float(frac.max()),
    }
    if per_atom is not None:
        from quests_core.export import export_dataset

        dataset.set_column("H", H)
        dataset.set_column("H_stderr", H_err)
        dataset.set_column("mean_dH", mean_dh)
        dataset.set_column("frac_novel", frac)
        dataset.set_array("dH", per_atom)
        export_dataset(dataset, args.output, arrays=["dH"])
        print(f"wrote {args.output}", file=sys.stderr)
    return _finish(args, skipped, summary, table)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _h_method(rows: np.ndarray, counts: np.ndarray, threshold: int, args: Any) -> str:
    """How H was computed, in words (the summary line ``H_method``)."""
    sampled = rows < counts
    if not sampled.any():
        why = "--exact-entropy" if args.exact_entropy else f"every frame <= {threshold} atoms"
        return f"exact for all {len(counts)} frame(s) ({why}); H_stderr = 0"
    lo, hi = int(rows[sampled].min()), int(rows[sampled].max())
    size = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return (
        f"sampled for {int(sampled.sum())} of {len(counts)} frame(s) with > {threshold} atoms: "
        f"{size} random atoms against all atoms of the frame (with a control variate), "
        f"standard error in H_stderr (target {args.entropy_stderr:g} nats; "
        "--exact-entropy for the exact value)"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve [dashboard options]``: hand over to ``dashboard.launch.main``."""
    return _serve(list(getattr(args, "serve_args", []) or []))


def _serve(argv: list[str]) -> int:
    try:
        launch = importlib.import_module("dashboard.launch")
    except ModuleNotFoundError as exc:
        if exc.name in ("dashboard", "dashboard.launch"):
            raise QuestsError("the dashboard is not installed (dashboard.launch missing)") from None
        raise QuestsError(f"the dashboard needs the missing package {exc.name!r}") from None
    return int(launch.main(argv) or 0)


# ----------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------


def _serve_argv(argv: Sequence[str]) -> tuple[bool, list[str]] | None:
    """If the command is ``serve``, its arguments (and whether --debug came first)."""
    debug = False
    for i, token in enumerate(argv):
        if token == "--debug":
            debug = True
            continue
        if token == "serve":
            return debug, list(argv[i + 1 :])
        return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``quests-dashboard`` command line; returns the exit status.

    0: success; 1: bad input (one-line error on stderr); 2: usage error;
    3: unexpected internal error; 130: interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    serve = _serve_argv(argv)
    debug = bool(serve and serve[0]) or "--debug" in argv
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        return _main(argv, serve, debug)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (full warnings with ``--debug``)."""
    text = " ".join(str(message).split())[:300]
    print(f"warning: {text}", file=sys.stderr)


def _main(argv: list[str], serve: tuple[bool, list[str]] | None, debug: bool) -> int:
    try:
        if serve is not None:
            return _serve(serve[1])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version or a usage error
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        debug = bool(getattr(args, "debug", False))
        return int(args.func(args) or 0)
    except QuestsError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early, e.g. `... | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the CLI reports anything on one line
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(
            f"internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

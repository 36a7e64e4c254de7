"""``quests-dashboard dh TEST... -r REF...``: dH of every test environment.

In memory (the default): the per-atom dH of the test files against the
reference (exact, or the nearest-neighbour upper bound with ``--approx``),
cached as a table keyed by the descriptor keys, h, method and precision; the
summary gives mean/max/min dH, the overlap and the novelty. ``--output``:
``.csv/.parquet/.json`` (per-atom table) or ``.extxyz`` (structures with a dH
array).

With ``--store DIR``: out of core, through
:func:`quests_core.chunked.chunked_delta_entropy` (chunks of frames into a
resumable Parquet store, optionally on a Dask scheduler); ``--output`` then
writes the per-frame table. Memory: the reference descriptors plus one block
of ``--block-atoms`` test atoms.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

from quests_core.dask_tools import SHARED_FILESYSTEM
from quests_core.errors import QuestsError

from .loading import combined, descriptor_cache, load_files, load_reference, source_column
from .output import RESULT_SUFFIXES, STRUCTURE_SUFFIXES, export_structures, finish
from .parser import (
    add_reference_options,
    bandwidth,
    batch_parser,
    default_of,
    positive_int,
    prepare,
    species_list,
)
from .progress import kernel_bar

NAME = "dh"

#: per-frame columns printed and written by ``dh --store`` (the store keeps all of them)
STORE_FRAME_COLUMNS = (
    "structure", "source", "frame", "time", "n_atoms", "temperature", "mean_dH", "frac_novel",
    "max_dH",
)


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.approximate import approx_delta_entropy
    from quests_core.chunked import DEFAULT_BLOCK_ATOMS, DEFAULT_CHUNK_FRAMES

    neighbours = default_of(approx_delta_entropy, "n_neighbors")
    p = batch_parser(
        sub,
        common,
        NAME,
        help="dH of test data against a reference",
        description="Differential entropy dH of every test environment with "
        "respect to the reference. --output: .csv/.parquet/.json "
        "(per-atom table) or .extxyz (structures with a dH array).",
        files="test structure files",
    )
    add_reference_options(p, required=True, help_text="reference files", of="test files")
    p.add_argument(
        "--approx",
        action="store_true",
        help="approximate dH from nearest neighbours (an upper bound)",
    )
    p.add_argument(
        "--n-neighbors",
        type=positive_int,
        default=neighbours,
        help=f"reference neighbours per test point with --approx (default {neighbours})",
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
        type=positive_int,
        default=DEFAULT_CHUNK_FRAMES,
        help=f"frames per chunk with --store (default {DEFAULT_CHUNK_FRAMES})",
    )
    g.add_argument(
        "--block-atoms",
        type=positive_int,
        default=DEFAULT_BLOCK_ATOMS,
        help="atoms whose descriptors are held at once with --store; big frames are split "
        f"into blocks of this many atoms (default {DEFAULT_BLOCK_ATOMS})",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="compute the chunks on a dask.distributed scheduler (e.g. tcp://host:8786, or 'local' "
        "for a LocalCluster on this machine); "
        "its workers must see the files and the store at the same paths (relative paths "
        "are sent as absolute ones, and every worker is checked first)",
    )
    g.add_argument(
        "--overwrite", action="store_true", help="discard the store's contents instead of resuming"
    )
    g.add_argument(
        "--save-descriptors",
        action="store_true",
        help="also keep each chunk's descriptors in the store (.npy)",
    )
    p.set_defaults(func=run, outputs=(*RESULT_SUFFIXES, *STRUCTURE_SUFFIXES))


def run(args: argparse.Namespace) -> int:
    """``dh TEST... --reference REF... [--approx] [--store DIR]``"""
    settings, suffix = prepare(args)
    if args.store:
        return _run_store(args, settings, suffix)
    test = load_files(args.files, args, role="test", settings=settings)
    ref, ref_ds, x = load_reference(args, settings)
    test_ds, y = combined(test.items)
    h = bandwidth(settings, ref_ds)
    method = f"approximate ({args.n_neighbors} neighbours)" if args.approx else "exact"
    cache, rkey, dh = descriptor_cache(args), None, None
    if cache is not None and all(it.key for it in test.items + ref.items):
        from quests_core.cache_keys import result_key

        rkey = result_key(
            "dH",
            test=[it.key for it in test.items],
            reference=[it.key for it in ref.items],
            bandwidth=repr(h),
            method=method,
            precision=settings.precision,
        )
        cached = cache.get_table(rkey)
        if cached is not None and len(cached) == len(y):
            dh = cached["dH"].to_numpy(dtype=float)
    from_cache = dh is not None
    if dh is None:
        dh = _compute(args, settings, y, x, h)
    table = test_ds.atoms_table(positions=False)
    if cache is not None and rkey is not None and not from_cache:
        cache.put_table(rkey, table[["structure", "frame", "atom"]].assign(dH=dh))
    table.insert(0, "source", source_column(test_ds))
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
    if suffix in STRUCTURE_SUFFIXES:
        export_structures(test_ds, args.output, arrays={"dH": dh})
    return finish(args, test.skipped + ref.skipped, summary, table, show_table=False)


def _compute(args, settings, y: np.ndarray, x: np.ndarray, h: float) -> np.ndarray:
    """dH of ``y`` against ``x``: exact with a progress bar, or ``--approx``."""
    import quests_core as qc

    if args.approx:
        dh = qc.approx_delta_entropy(
            y, x, h, n_neighbors=args.n_neighbors, n_threads=settings.threads
        )
        return np.asarray(dh, dtype=float)
    return exact_dh(args, settings, y, x, h)


def exact_dh(args, settings, y: np.ndarray, x: np.ndarray, h: float) -> np.ndarray:
    """Exact dH of ``y`` against ``x`` under the settings, with a progress bar."""
    import quests_core as qc

    with kernel_bar(args, "dH") as progress:
        dh = qc.delta_entropy(y, x, h, progress=progress, **settings.kernel_kwargs())
    return np.asarray(dh, dtype=float)


def _run_store(args: argparse.Namespace, settings, suffix: str | None) -> int:
    """``dh TEST... --reference REF... --store DIR``: chunked, resumable, optionally on Dask."""
    from quests_core.chunked import chunked_delta_entropy

    if args.approx:
        raise QuestsError("--approx cannot be combined with --store (the store holds exact dH)")
    if suffix in STRUCTURE_SUFFIXES:
        raise QuestsError(
            "with --store, --output writes the per-frame table: use .csv, .parquet or .json",
            source=args.output,
        )
    if args.skip_bad:
        raise QuestsError("--skip-bad cannot be combined with --store (a store is one run)")
    ref, ref_ds, x = load_reference(args, settings)
    h = bandwidth(settings, ref_ds)
    with contextlib.ExitStack() as stack:
        files, store, topology, client = args.files, args.store, args.topology, None
        if args.scheduler:
            files, store, topology, client = _worker_plan(args, stack)
        run_ = _chunked(args, settings, chunked_delta_entropy, files, x, store, h, topology,
                        client)
    if run_ is None:
        return 130
    frames = run_.store.frames()
    n_atoms = frames["n_atoms"].to_numpy(np.int64)
    summary = {
        "store": str(run_.store.path),
        "chunks_computed": len(run_.computed),
        "chunks_resumed": len(run_.skipped),
        "complete": run_.complete,
        "frames": int(len(frames)),
        "test_atoms": int(n_atoms.sum()),
        "reference_atoms": int(len(x)),
        "bandwidth": h,
        "precision": settings.precision,
        "mean_dH": float(np.average(frames["mean_dH"], weights=n_atoms)),
        "max_dH": float(frames["max_dH"].max()),
        "novelty": float(np.average(frames["frac_novel"], weights=n_atoms)),
        "seconds": round(run_.seconds, 3),
    }
    shown = [c for c in STORE_FRAME_COLUMNS if c in frames]
    return finish(args, ref.skipped, summary, frames[shown])


def _worker_plan(args: argparse.Namespace, stack: contextlib.ExitStack):
    """``(files, store, topology, client)`` for a run on ``--scheduler``: the paths made
    absolute and checked to exist here (a worker's current directory is not ours), the
    client connected, and every worker checked to see the files and the store's folder."""
    from quests_core.dask_tools import check_workers_see, dask_client, paths_for_workers
    from quests_core.io_mdanalysis import topology_path

    files = paths_for_workers(args.files)
    topology = paths_for_workers(args.topology)[0] if args.topology else None
    store = os.path.abspath(os.path.expanduser(args.store))
    client = stack.enter_context(dask_client(args.scheduler))
    read = list(files)
    for path in files:  # an MD trajectory's topology, given or found next to it
        found = topology_path(path, args.format, topology)
        if found is not None and found not in read:
            read.append(found)
    check_workers_see(client, read, writes=[store])
    return files, store, topology, client


def _chunked(args, settings, chunked_delta_entropy, files, x, store, h, topology, client):
    """Run the chunked pipeline; None when interrupted (the finished chunks are kept)."""
    try:
        with kernel_bar(args, "dH chunks", unit=" frames") as progress:
            return chunked_delta_entropy(
                files,
                x,
                store,
                h,
                k=settings.k,
                cutoff=settings.cutoff,
                species=species_list(settings),
                index=args.index,
                format=args.format,
                type_map=args.type_map,
                topology=topology,
                topology_format=getattr(args, "topology_format", None),
                chunk_frames=args.chunk_frames,
                block_atoms=args.block_atoms,
                precision=settings.precision,
                time_step=args.time_step,
                save_descriptors=args.save_descriptors,
                overwrite=args.overwrite,
                n_threads=settings.threads,
                client=client,
                progress=progress,
            )
    except KeyboardInterrupt:
        print(f"interrupted: the finished chunks are kept in {args.store}; run the same "
              "command again to resume", file=sys.stderr)
        return None
    except (QuestsError, FileNotFoundError) as exc:
        # checked before submission; a worker that joined later, or a file removed since
        if client is None or not ("not found" in str(exc) or isinstance(exc, FileNotFoundError)):
            raise
        text = " ".join(str(exc).split())[:300]
        raise QuestsError(f"a Dask worker failed: {text}: {SHARED_FILESYSTEM}") from None

"""``quests-dashboard descriptors FILE...``: the descriptors of every atom (cached).

Prints one row per file (frames, atoms, width, whether it came from the cache,
seconds). ``--output``: ``.npy`` (the descriptor array of all files, in order,
streamed, with its layout sidecar ``<path>.layout.json``), ``.npz`` (array and
layout record in one file), both through :mod:`quests_core.descriptor_files` so
the commands that read them (``dh --reference x.npy``, ``uq``, ``nucleation``)
refuse a layout that differs from theirs; ``.csv``/``.parquet`` (per-atom
table: source, structure, frame, atom, species, ``d0``...), ``.json`` (the
per-file summary).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from .loading import combined, load_files, source_column
from .output import RESULT_SUFFIXES, finish, write_npy, wrote
from .parser import batch_parser, prepare

NAME = "descriptors"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    p = batch_parser(
        sub,
        common,
        NAME,
        help="descriptors of every atom",
        description="Compute (or load from the cache) the descriptors of every "
        "atom. --output: .npy (array, with its layout in <path>.layout.json), .npz "
        "(array and layout), .csv/.parquet (per-atom table), .json (per-file summary).",
    )
    p.set_defaults(func=run, outputs=(".npy", ".npz", *RESULT_SUFFIXES))


def run(args: argparse.Namespace) -> int:
    """``descriptors FILE...``"""
    settings, suffix = prepare(args)
    batch = load_files(args.files, args, settings=settings)
    table = pd.DataFrame(
        [
            {
                "file": it.path,
                "frames": len(it.dataset),
                "atoms": it.dataset.n_atoms,
                "dimension": int(it.x.shape[1]),
                "from_cache": it.from_cache,
                "seconds": round(it.seconds, 4),
            }
            for it in batch.items
        ]
    )
    summary = {
        "files": len(batch.items),
        "atoms": int(table["atoms"].sum()),
        "dimension": int(batch.items[0].x.shape[1]),
        "k": settings.k,
        "cutoff": settings.cutoff,
    }
    layout = {"k": settings.k, "cutoff": settings.cutoff, "species": settings.species}
    if suffix == ".npy":
        from quests_core.descriptor_files import write_layout

        write_npy(args.output, [it.x for it in batch.items])
        write_layout(args.output, **layout, source=_sources(batch))
        wrote(args.output)
    elif suffix == ".npz":
        from quests_core.descriptor_files import save_descriptors

        x = np.concatenate([np.asarray(it.x) for it in batch.items])
        save_descriptors(args.output, x, **layout, source=_sources(batch))
        wrote(args.output)
    elif suffix in (".csv", ".parquet", ".pq"):
        from quests_core.export import write_table

        dataset, x = combined(batch.items)
        atoms = dataset.atoms_table(positions=False)
        atoms.insert(0, "source", source_column(dataset))
        desc = pd.DataFrame(np.asarray(x), columns=[f"d{i}" for i in range(x.shape[1])])
        write_table(pd.concat([atoms, desc], axis=1), args.output)
        wrote(args.output)
        return finish(args, batch.skipped, summary, table, write=False)
    return finish(args, batch.skipped, summary, table)


def _sources(batch) -> str:
    """The input files of a batch, for the ``source`` of a layout record."""
    return ", ".join(it.path for it in batch.items)

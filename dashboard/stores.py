"""Chunk stores in the dashboard: finding, opening and rasterising them through Dask.

A chunk store (written by ``quests-dashboard dh --store DIR`` or
:func:`quests_core.chunked.chunked_delta_entropy`) can hold far more atoms than
the server has memory for. The dashboard never loads its per-atom table:
Datashader aggregates the Parquet parts as a Dask dataframe, partition by
partition, so no process holds every point, and it does so in a background
thread (:class:`BackgroundRaster`), so the server keeps serving every session
while 100 million points are rasterised. Axis extents come from the Parquet
column statistics, without reading the data.

A plain folder of per-atom Parquet files (with at least a ``dH`` column, e.g.
the outputs of ``quests-dashboard dh -o part.parquet``) opens the same way.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.chunk_store import MANIFEST_NAME, STORE_FORMAT, ChunkStore
from quests_core.errors import QuestsError

from .paths import check_data_dir, resolve_in_dir

#: Per-atom columns offered as axes, in this order, when the store has them.
STORE_AXES: tuple[str, ...] = ("structure", "frame", "time", "atom", "x", "y", "z", "dH")
#: Raster size in pixels (the plot stretches it).
RASTER_SHAPE = (900, 420)


def _is_store_dir(path: Path) -> bool:
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == STORE_FORMAT


def find_stores(root: str | os.PathLike, max_depth: int = 4, max_stores: int = 200) -> list[str]:
    """Relative paths (POSIX style) of the chunk stores under ``root``.

    A store is a directory with a ``manifest.json`` of the chunk-store format;
    stores are not searched for nested stores. Hidden directories, symlinks
    leaving ``root`` and directories deeper than ``max_depth`` are skipped.
    """
    base = check_data_dir(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        depth = len(here.relative_to(base).parts)
        if MANIFEST_NAME in filenames and _is_store_dir(here) and here != base:
            found.append(here.relative_to(base).as_posix())
            dirnames[:] = []
            if len(found) >= max_stores:
                break
            continue
        keep = depth < max_depth
        dirnames[:] = sorted(d for d in dirnames if keep and not d.startswith("."))
    return found


def column_extents(paths: Sequence[Path], columns: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``(min, max)`` of numeric ``columns`` over Parquet files, from their row-group statistics.

    Columns without statistics in some row group are left out (they are then
    computed from the data when needed).
    """
    import pyarrow.parquet as pq

    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    missing: set[str] = set()
    for path in paths:
        meta = pq.read_metadata(path)
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            if group.num_rows == 0:
                continue
            for name in columns:
                if name not in names or name in missing:
                    continue
                stats = group.column(names.index(name)).statistics
                if stats is None or not stats.has_min_max:
                    missing.add(name)
                    continue
                lo[name] = min(lo.get(name, np.inf), float(stats.min))
                hi[name] = max(hi.get(name, -np.inf), float(stats.max))
    return {c: (lo[c], hi[c]) for c in columns if c in lo and c not in missing}


@dataclass
class StoreData:
    """An opened store: its small per-frame table in memory, its per-atom table on disk.

    Attributes
    ----------
    name : str
        Path relative to the data directory.
    path : Path
        Real path.
    parts : list of Path
        Per-atom Parquet parts (finished chunks only).
    frames : DataFrame
        Per-frame table (``mean_dH``, ``frac_novel``, ``max_dH``, ...); empty for
        a plain Parquet folder.
    axes : list of str
        Numeric per-atom columns usable as plot axes.
    extents : dict
        ``(min, max)`` of those columns.
    info : dict
        Run parameters and progress for the summary.
    """

    name: str
    path: Path
    parts: list[Path]
    frames: pd.DataFrame
    axes: list[str]
    extents: dict[str, tuple[float, float]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return int(self.info.get("atoms", 0))

    def atoms_dask(self, columns: Sequence[str] | None = None):
        """The per-atom table as a Dask dataframe (one partition per part file)."""
        import dask.dataframe as dd

        return dd.read_parquet([str(p) for p in self.parts],
                               columns=list(columns) if columns else None)

    def robust_extent(self, column: str, quantile: float = 0.005,
                      max_rows: int = 1_000_000) -> tuple[float, float]:
        """Range from the ``quantile`` to the ``1 - quantile`` quantile of ``column``
        (0 included for dH), estimated from evenly spaced Parquet row groups holding
        about ``max_rows`` rows in all: bounded work whatever the store's size.

        The initial view of a failed run must not be squashed by a few exploding
        atoms (dH of 1e5 nats); zooming out still reaches everything.
        """
        import pyarrow.parquet as pq

        key = f"robust:{column}"
        if key not in self.extents:
            groups = []
            for p in self.parts:
                meta = pq.read_metadata(p)
                groups += [(p, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
            mean_rows = max(1.0, sum(n for *_, n in groups) / len(groups))
            # evenly spaced over the run (a failed run goes wrong at its end), at least 8
            k = min(len(groups), max(8, int(max_rows // mean_rows)))
            picked = [groups[int(i)] for i in np.unique(np.linspace(0, len(groups) - 1, k)
                                                        .round())]
            values = np.concatenate([
                pq.ParquetFile(p).read_row_group(g, columns=[column]).column(0).to_numpy()
                .astype(np.float64) for p, g, _ in picked
            ])
            values = values[np.isfinite(values)]
            lo_all, hi_all = self.extent(column)
            if len(values) == 0:
                self.extents[key] = (lo_all, hi_all)
            else:
                lo, hi = (float(q) for q in np.quantile(values, [quantile, 1 - quantile]))
                if column == "dH":
                    lo, hi = min(lo, 0.0), max(hi, 0.0)
                pad = 0.05 * (hi - lo) if hi > lo else 0.5
                self.extents[key] = (max(lo - pad, lo_all), min(hi + pad, hi_all))
        lo, hi = self.extents[key]
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi

    def extent(self, column: str) -> tuple[float, float]:
        """Data range of ``column``, padded when it is a single value."""
        if column not in self.extents:
            import dask

            ddf = self.atoms_dask([column])[column]
            lo, hi = dask.compute(ddf.min(), ddf.max())
            self.extents[column] = (float(lo), float(hi))
        lo, hi = self.extents[column]
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise QuestsError(f"{self.name}: column {column!r} has no finite values")
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi


def _numeric_columns(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]


def open_store(root: str | os.PathLike, relative: str) -> StoreData:
    """Open the chunk store (or Parquet folder) ``relative`` inside the data directory.

    Raises
    ------
    QuestsError
        One line naming the store: outside the data directory, not a store,
        a damaged manifest, no finished chunks, or no ``dH`` column.
    """
    path = resolve_in_dir(root, relative, directory=True)
    info: dict[str, Any] = {}
    if (path / MANIFEST_NAME).exists():
        try:
            store = ChunkStore(path)
            parts = store.part_paths("atoms")
            frames = store.frames() if parts else pd.DataFrame()
        except QuestsError as exc:
            raise QuestsError(f"{relative}: {_strip_source(str(exc), path)}") from None
        params = store.params
        info = {
            "kind": "chunk store",
            "files": [Path(f["path"]).name for f in params.get("files", [])],
            "chunks": len(store.chunk_ids),
            "planned": len(store.plan),
            "complete": store.complete,
            "atoms": store.n_atoms,
            "frames": int(len(frames)),
            "k": params.get("k"),
            "cutoff": params.get("cutoff"),
            "h": params.get("h"),
            "precision": params.get("precision"),
            "reference": (params.get("reference") or {}).get("shape", [0])[0],
        }
    else:
        parts = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
        if not parts:
            raise QuestsError(f"{relative}: not a chunk store and holds no Parquet files")
        frames = pd.DataFrame()
        info = {"kind": "Parquet folder", "files": [p.name for p in parts], "chunks": len(parts),
                "planned": len(parts), "complete": True}
    if not parts:
        raise QuestsError(f"{relative}: the store has no finished chunks yet")
    try:
        numeric = _numeric_columns(parts[0])
        if "dH" not in numeric:
            raise QuestsError(f"{relative}: the per-atom table has no numeric dH column")
        axes = [c for c in STORE_AXES if c in numeric]
        extents = column_extents(parts, axes)
        if "atoms" not in info:
            import pyarrow.parquet as pq

            info["atoms"] = int(sum(pq.read_metadata(p).num_rows for p in parts))
    except OSError as exc:
        raise QuestsError(f"{relative}: cannot read its Parquet parts ({exc})") from None
    if not frames.empty and "max_dH" in frames:
        n = frames["n_atoms"].to_numpy(np.int64)
        info["mean_dH"] = float(np.average(frames["mean_dH"], weights=n))
        info["frac_novel"] = float(np.average(frames["frac_novel"], weights=n))
        info["max_dH"] = float(frames["max_dH"].max())
    return StoreData(relative, path, parts, frames, axes, extents, info)


def _strip_source(text: str, path: Path) -> str:
    """The message without the server path the core put in front (the name says it)."""
    if text.startswith(str(path)) and ": " in text:
        return text.split(": ", 1)[1]
    return text


# ----------------------------------------------------------------------------
# Rasterising
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterRequest:
    """One raster: mean dH of the points on ``x``/``y`` inside the ranges."""

    x: str
    y: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = RASTER_SHAPE[0]
    height: int = RASTER_SHAPE[1]
    #: dH scale (:mod:`dashboard.dhscale`): ranges of dH-like axes and the aggregated
    #: colour are on this scale.
    scale: str = "linear"


def rasterize_store(ddf, request: RasterRequest):
    """Datashader mean-dH aggregate (an ``xarray.DataArray``) of a Dask or pandas dataframe.

    With ``request.scale`` "asinh", dH-like axes and the colour are aggregated on
    the asinh scale (the mean of asinh(dH) per pixel), the ranges being on that scale.
    """
    import datashader as ds

    from . import dhscale

    canvas = ds.Canvas(plot_width=request.width, plot_height=request.height,
                       x_range=tuple(request.x_range), y_range=tuple(request.y_range))
    if request.scale != "linear":
        columns = {c for c in (request.x, request.y, "dH") if dhscale.is_dh(c)}
        if hasattr(ddf, "map_partitions"):
            ddf = ddf.map_partitions(_on_scale, sorted(columns), request.scale)
        else:
            ddf = _on_scale(ddf, sorted(columns), request.scale)
    return canvas.points(ddf, request.x, request.y, agg=ds.mean("dH"))


def _on_scale(df: pd.DataFrame, columns: list[str], scale: str) -> pd.DataFrame:
    """``df`` with ``columns`` mapped to ``scale``'s plotted coordinates."""
    from . import dhscale

    return df.assign(**{c: dhscale.forward(df[c].to_numpy(), scale) for c in columns})


class BackgroundRaster:
    """Runs raster requests one at a time in a worker thread; never blocks the caller.

    :meth:`submit` returns at once. While a request is computing, newer
    requests replace each other: only the newest waiting one runs next (a
    zoom gesture makes many range events). ``deliver(request, result)`` is
    called from the worker thread with the aggregate, or with the exception
    the computation raised.
    """

    def __init__(self, compute: Callable[[RasterRequest], Any],
                 deliver: Callable[[RasterRequest, Any], None]):
        self._compute = compute
        self._deliver = deliver
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._pending: RasterRequest | None = None
        self.computed = 0

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def submit(self, request: RasterRequest) -> None:
        with self._lock:
            self._pending = request
            if not self._idle.is_set():
                return
            self._idle.clear()
        threading.Thread(target=self._run, name="store-raster", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                request, self._pending = self._pending, None
                if request is None:
                    self._idle.set()
                    return
            try:
                result = self._compute(request)
            except Exception as exc:  # noqa: BLE001 - handed to deliver, shown to the user
                result = exc
            self.computed += 1
            with self._lock:
                stale = self._pending is not None
            if not stale:
                self._deliver(request, result)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no request is computing or waiting (for tests and scripts)."""
        return self._idle.wait(timeout)

"""The Stores view: chunk stores read through Dask, rasterised in a background thread."""

from __future__ import annotations

import json
import threading

import datashader as ds
import holoviews as hv
import numpy as np
import pytest
from bokeh.document import Document

from dashboard._testing import JUMP_FRAME, N_TRAJ_FRAMES, make_sample_dir
from dashboard.app import TAB_NAMES, DashboardApp, load_extensions
from dashboard.state import AppState
from dashboard.stores import (
    BackgroundRaster,
    RasterRequest,
    column_extents,
    find_stores,
    open_store,
    rasterize_store,
)
from dashboard.views.stores import NONE, StoreView
from quests_core.chunk_store import ChunkStore
from quests_core.chunked import chunked_delta_entropy
from quests_core.descriptors import descriptors
from quests_core.errors import QuestsError
from quests_core.io import read_structures

N_ATOMS = 108  # atoms per frame of the synthetic trajectory


@pytest.fixture(scope="module", autouse=True)
def extensions():
    load_extensions()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A data directory with the synthetic files, one chunk store and one decoy."""
    root = tmp_path_factory.mktemp("stores")
    files = make_sample_dir(root)
    x_ref = descriptors(read_structures(files["solid.extxyz"]))
    chunked_delta_entropy(files["failed_traj.extxyz"], x_ref, root / "runs" / "failed", 0.015,
                          chunk_frames=5)
    decoy = root / "not_a_store"
    decoy.mkdir()
    (decoy / "manifest.json").write_text(json.dumps({"format": "something else"}))
    return root


def test_find_and_open_store(data_dir):
    assert find_stores(data_dir) == ["runs/failed"]
    data = open_store(data_dir, "runs/failed")
    store = ChunkStore(data_dir / "runs" / "failed")
    atoms = store.atoms()
    assert data.n_atoms == len(atoms) == N_TRAJ_FRAMES * N_ATOMS
    assert data.axes == ["structure", "frame", "time", "atom", "x", "y", "z", "dH"]
    for column in data.axes:  # extents come from Parquet statistics, not from the data
        assert data.extents[column] == (atoms[column].min(), atoms[column].max())
    assert data.info["chunks"] == data.info["planned"] == 3 and data.info["complete"]
    assert data.info["mean_dH"] == pytest.approx(atoms["dH"].mean(), rel=1e-12)
    assert data.info["max_dH"] == pytest.approx(atoms["dH"].max(), rel=1e-12)
    # the failed run: novel after the jump, known before it
    frames = data.frames
    assert (frames["frac_novel"].iloc[JUMP_FRAME:] > 0.9).all()
    assert (frames["mean_dH"].iloc[:JUMP_FRAME] < 0).all()
    assert data.atoms_dask(["dH"]).npartitions == 3


@pytest.mark.parametrize("relative, message", [
    ("not_a_store", "not_a_store: not a quests chunk-store manifest"),
    ("../", "'..' is not allowed"),
    ("missing", "no such directory in the data directory"),
])
def test_open_store_refuses_bad_paths(data_dir, relative, message):
    with pytest.raises(QuestsError, match=message.replace("(", r"\(")):
        open_store(data_dir, relative)


def test_damaged_manifest_is_one_line_error(data_dir, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_dir / "runs" / "failed", root / "broken")
    (root / "broken" / "manifest.json").write_text('{"format": "quests-chunk-store", ')
    with pytest.raises(QuestsError) as info:
        open_store(root, "broken")
    text = str(info.value)
    assert text.startswith("broken: ") and "\n" not in text


def test_raster_equals_datashader_on_the_whole_table(data_dir):
    data = open_store(data_dir, "runs/failed")
    request = RasterRequest("structure", "dH", data.extent("structure"), data.extent("dH"),
                            width=60, height=40)
    via_dask = rasterize_store(data.atoms_dask(["structure", "dH"]), request)
    table = ChunkStore(data.path).atoms(["structure", "dH"])
    canvas = ds.Canvas(plot_width=60, plot_height=40, x_range=request.x_range,
                       y_range=request.y_range)
    direct = canvas.points(table, "structure", "dH", agg=ds.mean("dH"))
    np.testing.assert_allclose(via_dask.values, direct.values, rtol=1e-12, equal_nan=True)
    assert np.isfinite(via_dask.values).sum() > 0


def test_column_extents_skip_missing_columns(data_dir):
    parts = ChunkStore(data_dir / "runs" / "failed").part_paths("atoms")
    ext = column_extents(parts, ["dH", "no_such_column"])
    assert set(ext) == {"dH"}


def test_background_raster_never_blocks_and_keeps_only_the_newest():
    gate = threading.Event()
    computed, delivered = [], []

    def compute(request):
        computed.append(request.x_range)
        gate.wait(10)
        return request.x_range

    raster = BackgroundRaster(compute, lambda req, res: delivered.append(res))
    requests = [RasterRequest("x", "dH", (0.0, float(i + 1)), (0.0, 1.0)) for i in range(4)]
    for r in requests:
        raster.submit(r)  # returns at once although the first computation is blocked
    assert raster.busy and computed == [(0.0, 1.0)]
    gate.set()
    assert raster.wait(10)
    # the first (already running) and the newest; the two in between were replaced
    assert computed == [(0.0, 1.0), (0.0, 4.0)]
    assert delivered == [(0.0, 4.0)]  # the stale first result was not shown


def test_background_raster_delivers_errors():
    raster = BackgroundRaster(lambda r: 1 / 0, lambda req, res: out.append(res))
    out = []
    raster.submit(RasterRequest("x", "dH", (0.0, 1.0), (0.0, 1.0)))
    assert raster.wait(10)
    assert isinstance(out[0], ZeroDivisionError)


def test_store_view_opens_rasterises_and_zooms(data_dir):
    state = AppState(data_dir=str(data_dir), dh_scale="linear")
    view = StoreView(state=state, clip_outliers=True)
    assert view.param.store.objects == [NONE, "runs/failed"]
    view.store = "runs/failed"
    assert view.wait(30) and view.rasters == 1 and not view.busy
    assert view.status.startswith("Raster 1: frame (structure index) 0 to 11, dH (nats)")
    # the range event a freshly drawn plot echoes (with rounding noise) is not re-aggregated
    (x0, x1), (y0, y1) = view.home
    view._ranges.event(x_range=(x0 + 1e-12, x1), y_range=(y0, y1 - 1e-12))
    assert view.wait(30) and view.rasters == 1
    full = view._pipe.data
    assert full.dims == ("dH", "structure")
    lo, hi = view.data.extent("structure")
    assert float(full.coords["structure"].min()) == pytest.approx(lo, abs=(hi - lo) / 900)
    # the initial dH range leaves out the exploding atoms (0.5 % tails), keeps dH = 0
    dh = ChunkStore(view.data.path).delta_entropy()
    y = full.coords["dH"].to_numpy()
    assert y.min() <= 0.0 <= y.max() and y.max() < dh.max()
    assert np.mean(dh <= y.max()) >= 0.99
    # zoom: the visible range is aggregated again at full resolution
    view._ranges.event(x_range=(2.0, 6.0), y_range=(-10.0, 10.0))
    assert view.wait(30) and view.rasters == 2 and not view.busy
    zoomed = view._pipe.data
    xs = zoomed.coords["structure"].to_numpy()
    assert 2.0 <= xs.min() < xs.max() <= 6.0 and zoomed.shape == (420, 900)
    # Rescan reopens the store (a run in progress grows) and aggregates it afresh
    view.rescan()
    assert view.wait(30) and view.rasters == 3
    # other axes
    view.x_axis = "x"
    assert view.wait(30) and view._pipe.data.dims == ("dH", "x")
    # the asinh scale (the default) shows every atom: dH axis from asinh(min) to asinh(max)
    view.x_axis = "structure"
    view.clip_outliers = False
    state.dh_scale = "asinh"
    assert view.wait(30) and view._pipe.data.dims == ("dH", "structure")
    (y0, y1) = view.home[1]
    assert y0 == pytest.approx(np.arcsinh(dh.min()), rel=1e-6)
    assert y1 == pytest.approx(np.arcsinh(dh.max()), rel=1e-6)
    assert view.status.split("dH (nats) ")[1].startswith(f"{dh.min():.4g} to {dh.max():.4g}")
    # the layout renders with Bokeh (summary, raster, per-frame curves)
    layout = view.panel()
    summary = view.summary().object
    assert f"{N_TRAJ_FRAMES * N_ATOMS:,} atoms in {N_TRAJ_FRAMES} frames" in summary
    assert "3 of 3 chunks finished" in summary
    plot = hv.renderer("bokeh").get_plot(view.plot().object, doc=Document())
    assert "via Dask" in plot.state.title.text
    assert layout is not None and state.messages == []
    csv = view._frames_csv().getvalue().decode()
    assert csv.count("\n") == N_TRAJ_FRAMES + 1 and "max_dH" in csv


def test_store_view_bad_store_keeps_the_session(data_dir, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_dir / "runs", root / "runs")
    state = AppState(data_dir=str(root))
    view = StoreView(state=state)
    view.store = "runs/failed"
    assert view.wait(30) and view.data is not None
    # a run in progress: the manifest lists a chunk whose part file disappeared
    part = next((root / "runs" / "failed" / "atoms").glob("*.parquet"))
    part.unlink()
    view.rescan()
    assert state.messages and state.messages[-1][0] == "error"
    assert "runs/failed" in state.messages[-1][1]
    assert view.data is not None  # the store opened before stays shown


def test_empty_data_dir_shows_the_command_hint(tmp_path):
    view = StoreView(state=AppState(data_dir=str(tmp_path)))
    assert view.param.store.objects == [NONE]
    assert "--store" in view.plot().object


def test_app_has_a_stores_tab(data_dir):
    app = DashboardApp(data_dir=str(data_dir), job_mode="thread")
    assert TAB_NAMES[-1] == "Stores" and app.views[-1] is app.stores
    tab = app.build_tab(len(TAB_NAMES) - 1)
    assert tab.objects and app.stores.param.store.objects == [NONE, "runs/failed"]
    app.cleanup()


def test_robust_extent_samples_row_groups_across_the_whole_run(tmp_path):
    """A Parquet folder of 50 row groups, dH = the group's index: the sampled groups span
    the run from first to last (a failed run goes wrong at its end), within budget."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data" / "parts"
    folder.mkdir(parents=True)
    for part in range(5):
        with pq.ParquetWriter(folder / f"part-{part}.parquet",
                              pa.schema([("structure", pa.int64()), ("dH", pa.float64())])) as w:
            for g in range(10):
                index = 10 * part + g
                w.write_table(pa.Table.from_pandas(pd.DataFrame(
                    {"structure": np.full(1000, index), "dH": np.full(1000, float(index))}),
                    preserve_index=False))
    data = open_store(tmp_path / "data", "parts")
    assert data.info["kind"] == "Parquet folder" and data.n_atoms == 50_000
    lo, hi = data.robust_extent("dH", max_rows=8_000)
    assert lo <= 0.0 and 49.0 <= hi <= 49.0 + 0.05 * 49 + 1e-9
    assert data.extent("dH") == (0.0, 49.0)


@pytest.fixture
def sidebar_state(tmp_path):
    """A fresh data directory with the synthetic files; reference and trajectory chosen."""
    files = make_sample_dir(tmp_path / "data")
    state = AppState(data_dir=str(tmp_path / "data"))
    state.add_file(str(files["solid.extxyz"]), "solid.extxyz", role="reference")
    state.add_file(str(files["failed_traj.extxyz"]), "failed_traj.extxyz", role="trajectory")
    return state, files


def test_stores_tab_writes_a_store_from_the_sidebar_files(sidebar_state):
    state, files = sidebar_state
    view = StoreView(state=state, job_mode="thread")
    view.new_store, view.chunk_frames = "failed", 5
    state.settings.precision = "float64"  # the sidebar's, the one precision of the session
    job = view.write_store_sync(120)
    assert job.state == "done", job.error
    assert job.settings.precision == "float64"
    assert view.store == "stores/failed" and view.jobs.status == "Done: stores/failed"
    assert view.wait(30) and view.rasters >= 1
    assert view.data.info["precision"] == "float64"
    assert not hasattr(view.param, "precision")  # no second precision in the Stores tab
    data_dir = view.data.path
    store = ChunkStore(data_dir)
    assert store.complete and len(store.chunk_ids) == 3  # 12 frames in chunks of 5
    x_ref = descriptors(read_structures(files["solid.extxyz"]))
    y = descriptors(read_structures(files["failed_traj.extxyz"]))
    from quests_core.entropy import delta_entropy

    np.testing.assert_allclose(store.delta_entropy(), delta_entropy(y, x_ref, 0.015),
                               rtol=1e-12, atol=1e-12)
    # writing it again resumes: nothing is recomputed
    stamps = {p: p.stat().st_mtime_ns for p in (data_dir / "atoms").iterdir()}
    assert view.write_store_sync(120).state == "done"
    assert {p: p.stat().st_mtime_ns for p in (data_dir / "atoms").iterdir()} == stamps
    assert [m for m in state.messages if m[0] == "error"] == []


@pytest.mark.parametrize("name, roles, message", [
    ("bad/name", ("reference", "trajectory"), "a store name is letters"),
    ("ok", ("test", "trajectory"), "add reference and test"),
])
def test_stores_tab_refuses_bad_store_requests(sidebar_state, name, roles, message):
    state, _ = sidebar_state
    for spec, role in zip(list(state.files), roles, strict=True):
        state.update_file(spec.name, role=role)
    view = StoreView(state=state, job_mode="thread")
    view.new_store = name
    assert view.write_store_sync() is None
    assert view.jobs.status.startswith("Not started") and message in view.jobs.status
    assert state.messages[-1][0] == "error"


def test_cancelled_store_keeps_its_finished_chunks(sidebar_state):
    from dashboard import compute, tasks

    state, _ = sidebar_state
    cancel = threading.Event()

    def report(fraction, text):
        if text.startswith("dH: 5 of"):  # the first chunk is finished
            cancel.set()

    path = compute.store_path(state.data_dir, "partial")
    settings = tasks.StoreRequest(settings=state.settings.frozen(), store_path=str(path),
                                  chunk_frames=5, precision="float32")
    from quests_core.errors import Cancelled

    with pytest.raises(Cancelled):
        tasks.run_store(state.files, settings, report, cancel)
    store = ChunkStore(path)
    assert store.chunk_ids == ["000-000000"] and not store.complete
    assert tasks.run_store(state.files, settings) == str(path)
    assert ChunkStore(path).complete

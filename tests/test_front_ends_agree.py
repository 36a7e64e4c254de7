"""The Python API, the CLI and the dashboard's pipeline give the same numbers.

Same files, same settings (volume rule), three front ends: the bandwidth, the
per-frame H, every atom's dH and the overlap matrix must be identical (to the
last bits the kernels allow: they run the same code on the same arrays), and
the second front end must find the first one's descriptors in the shared cache.
The same holds without a reference file (each run against its own first frame, h
the volume rule of that frame) and for an overlap matrix with a group that has no
periodic cell (one pooled h for every column): the one policy of
:mod:`quests_core.loading`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quests_core as qc
from quests_core.cache import DescriptorCache
from quests_core.cli import main as cli
from quests_core.dataset import Dataset
from quests_core.overlaps import overlap_matrix
from quests_core.settings import DEFAULTS, frames_bandwidth
from quests_core.trajectory import frame_statistics

DATA = Path(__file__).resolve().parents[1] / "sample_data"
REF = DATA / "cu_solid_400K.extxyz"
TRAJ = DATA / "cu_failed_simulation.extxyz"
MELT = DATA / "cu_melt.extxyz"  # a third set: with the volume rule its column's h differs
INDEX = ":3"


def _entries(cache_dir: Path) -> set[str]:
    """Descriptor entries of the cache (``tables/`` holds results, not descriptors)."""
    return {p.name for p in (cache_dir / "descriptors").glob("*.npy")}


def _api():
    """Numbers straight from the engine's functions."""
    ref = Dataset.from_files([str(REF)], index=INDEX)
    traj = Dataset.from_files([str(TRAJ)], index=INDEX)
    x_ref = qc.descriptors(list(ref.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
    x_traj = qc.descriptors(list(traj.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
    h = frames_bandwidth(ref.frames)
    melt = Dataset.from_files([str(MELT)], index=INDEX)
    x_melt = qc.descriptors(list(melt.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
    groups = {"ref": x_ref, "traj": x_traj, "melt": x_melt}
    h_columns = {"ref": h, "traj": frames_bandwidth(traj.frames),
                 "melt": frames_bandwidth(melt.frames)}
    overlap = overlap_matrix(groups, h_columns).matrix
    # the test tells the volume rule per column from one h for all columns
    assert not np.array_equal(overlap, overlap_matrix(groups, h).matrix)
    counts = traj.frames["n_atoms"].to_numpy()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    stats = [frame_statistics(x_traj[a:a + n], x_ref, h)[0] for a, n in zip(starts, counts,
                                                                          strict=True)]
    return {
        "h": h,
        "H": np.array([s.H for s in stats]),
        "mean_dH": np.array([s.mean_dH for s in stats]),
        "frac_novel": np.array([s.frac_novel for s in stats]),
        "dH": np.asarray(qc.delta_entropy(x_traj, x_ref, h)),
        # the overlap matrix with the volume rule: each column's own h(V)
        "overlap": overlap, "overlap_h": np.array(list(h_columns.values())),
    }


@pytest.fixture(scope="module")
def api():
    return _api()


def _cli_numbers(tmp: Path, cache: Path) -> dict:
    common = ["--cache-dir", str(cache), "--no-progress"]
    assert cli(["trajectory", str(TRAJ), "--index", INDEX, "-r", str(REF),
                "--reference-index", INDEX, "--bandwidth", "auto",
                "-o", str(tmp / "traj.json"), *common]) == 0
    assert cli(["dh", str(TRAJ), "--index", INDEX, "-r", str(REF), "--reference-index", INDEX,
                "--bandwidth", "auto", "-o", str(tmp / "dh.csv"), *common]) == 0
    assert cli(["overlap", str(REF), str(TRAJ), str(MELT), "--index", INDEX,
                "--bandwidth", "auto", "-o", str(tmp / "overlap.json"), *common]) == 0
    traj = json.loads((tmp / "traj.json").read_text())
    rows = pd.DataFrame(traj["rows"])
    overlap = json.loads((tmp / "overlap.json").read_text())
    return {
        "h": traj["summary"]["bandwidth"],
        "H": rows["H"].to_numpy(), "mean_dH": rows["mean_dH"].to_numpy(),
        "frac_novel": rows["frac_novel"].to_numpy(),
        "dH": pd.read_csv(tmp / "dh.csv")["dH"].to_numpy(),
        "overlap": np.array(overlap["summary"]["matrix"]),
    }


def _dashboard_numbers(monkeypatch, cache: Path) -> tuple[dict, DescriptorCache]:
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    store = DescriptorCache(cache)
    monkeypatch.setattr(compute, "_CACHE", store)
    files = [FileSpec(path=str(REF), name=REF.name, role="reference", index=INDEX),
             FileSpec(path=str(TRAJ), name=TRAJ.name, role="trajectory", index=INDEX),
             FileSpec(path=str(MELT), name=MELT.name, role="test", index=INDEX)]
    settings = ComputeSettings(bandwidth_mode="volume rule", overlap_max_n=100_000).frozen()
    res = run_pipeline(files, settings)
    traj = res.frames[res.frames["role"] == "trajectory"]
    dh = res.atoms.loc[res.atoms["role"] == "trajectory", "dH"].to_numpy(np.float64)
    by_file = res.overlap["file"]
    assert by_file.names == [REF.name, TRAJ.name, MELT.name]
    return {"h": res.h, "H": traj["H"].to_numpy(), "mean_dH": traj["mean_dH"].to_numpy(),
            "frac_novel": traj["frac_novel"].to_numpy(), "dH": dh,
            "overlap": by_file.matrix,
            "overlap_h": np.array([by_file.bandwidths[n] for n in by_file.names])}, store


def _assert_same(a: dict, b: dict,
                 names=("h", "H", "mean_dH", "frac_novel", "dH", "overlap")) -> None:
    for name in names:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_cli_then_dashboard(tmp_path, monkeypatch, api):
    cache = tmp_path / "cache"
    cli_numbers = _cli_numbers(tmp_path, cache)
    _assert_same(api, cli_numbers)
    written = _entries(cache)
    assert written, "the CLI wrote no cache entry"

    dash, store = _dashboard_numbers(monkeypatch, cache)
    _assert_same(api, dash, names=("h", "H", "mean_dH", "frac_novel", "overlap", "overlap_h"))
    # the dashboard's dH column is float32 (compact per-atom table)
    np.testing.assert_allclose(dash["dH"], api["dH"], rtol=1e-6, atol=1e-5)
    assert store.hits >= 3 and store.misses == 0, (store.hits, store.misses)
    assert _entries(cache) == written


def test_dashboard_then_cli(tmp_path, monkeypatch, api):
    cache = tmp_path / "cache"
    _, store = _dashboard_numbers(monkeypatch, cache)
    assert store.misses >= 3
    written = _entries(cache)
    cli_numbers = _cli_numbers(tmp_path, cache)
    _assert_same(api, cli_numbers)
    assert _entries(cache) == written, "the CLI computed descriptors the dashboard had cached"


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    """Two small boxes of water (a reference frame and a 3-frame run of the same box with
    jiggled atoms), built with ASE: two species of very different neighbourhoods."""
    from ase.build import molecule
    from ase.io import write

    rng = np.random.default_rng(7)
    base = molecule("H2O")
    box = None
    for i in range(3):
        for j in range(3):
            for k in range(3):
                m = base.copy()
                m.rotate(rng.uniform(0, 360), rng.normal(size=3))
                m.translate(np.array([i, j, k]) * 3.1 + 1.0)
                box = m if box is None else box + m
    box.set_cell([9.3, 9.3, 9.3])
    box.pbc = True
    folder = tmp_path_factory.mktemp("water")
    write(folder / "water_ref.extxyz", box, format="extxyz")
    frames = []
    for _ in range(3):
        f = box.copy()
        f.positions += rng.normal(scale=0.15, size=f.positions.shape)
        frames.append(f)
    write(folder / "water_run.extxyz", frames, format="extxyz")
    return folder / "water_ref.extxyz", folder / "water_run.extxyz"


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_species_and_precision_agree_with_the_cli(water, tmp_path, monkeypatch, precision):
    """The dashboard's Species and Precision settings mean the CLI's ``--species`` and
    ``--precision``: per-frame H, mean dH and the fraction of novel atoms agree; the
    multicomponent descriptor gives other numbers than the single-component one."""
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    ref, run = water
    monkeypatch.setattr(compute, "_CACHE", DescriptorCache(tmp_path / "cache"))
    files = [FileSpec(path=str(ref), name=ref.name, role="reference"),
             FileSpec(path=str(run), name=run.name, role="trajectory")]

    def dashboard(species: str) -> pd.DataFrame:
        settings = ComputeSettings(species=species, precision=precision, bandwidth=0.15,
                                   learning_max_n=50, overlap_max_n=200).frozen()
        res = run_pipeline(files, settings)
        return res.frames[res.frames["role"] == "trajectory"].reset_index(drop=True)

    assert cli(["trajectory", str(run), "-r", str(ref), "--bandwidth", "0.15",
                "--species", "O,H", "--precision", precision, "-o", str(tmp_path / "t.json"),
                "--cache-dir", str(tmp_path / "cli-cache"), "--no-progress"]) == 0
    rows = pd.DataFrame(json.loads((tmp_path / "t.json").read_text())["rows"])
    multi, single = dashboard("O,H"), dashboard("")
    rtol = 1e-12 if precision == "float64" else 1e-6
    for column in ("H", "mean_dH", "frac_novel"):
        np.testing.assert_allclose(multi[column], rows[column], rtol=rtol, atol=rtol,
                                   err_msg=column)
    assert np.all(multi["H"] < np.log(81) - 0.1)  # not every environment apart
    assert not np.allclose(single["H"], multi["H"], rtol=1e-2)


# ----------------------------------------------------------------------------
# No reference file: each run against its own first frame, h of that frame's volume
# ----------------------------------------------------------------------------


def _self_reference_api():
    """The policy of :mod:`quests_core.loading` straight from the engine: dH of every
    frame against the first frame, h the volume rule of the first frame only."""
    melt = Dataset.from_files([str(MELT)], index=INDEX)
    x = qc.descriptors(list(melt.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
    h = frames_bandwidth(melt.frames.iloc[:1])
    # the melt's volume changes from frame to frame: the old dashboard rule (every frame
    # of every file) gives another h, so this test tells the two apart
    assert abs(frames_bandwidth(melt.frames) - h) > 1e-5
    counts = melt.frames["n_atoms"].to_numpy()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ref = x[: counts[0]]
    stats = [frame_statistics(x[a:a + n], ref, h)[0] for a, n in zip(starts, counts,
                                                                     strict=True)]
    return {"h": h, "H": np.array([s.H for s in stats]),
            "mean_dH": np.array([s.mean_dH for s in stats]),
            "frac_novel": np.array([s.frac_novel for s in stats]),
            "dH": np.asarray(qc.delta_entropy(x, ref, h))}


def test_no_reference_file_agrees(tmp_path, monkeypatch):
    """Without a reference file the Python API, the CLI's ``trajectory`` and the
    dashboard's pipeline use the same reference (the first frame) and the same h (the
    volume rule of that frame): the same h, per-frame H, mean dH, novelty and dH."""
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    api = _self_reference_api()
    cache = tmp_path / "cache"
    assert cli(["trajectory", str(MELT), "--index", INDEX, "--bandwidth", "auto",
                "-o", str(tmp_path / "t.json"), "--cache-dir", str(cache),
                "--no-progress"]) == 0
    out = json.loads((tmp_path / "t.json").read_text())
    rows = pd.DataFrame(out["rows"])
    _assert_same(api, {"h": out["summary"]["bandwidth"], "H": rows["H"].to_numpy(),
                       "mean_dH": rows["mean_dH"].to_numpy(),
                       "frac_novel": rows["frac_novel"].to_numpy()},
                 names=("h", "H", "mean_dH", "frac_novel"))

    store = DescriptorCache(cache)
    monkeypatch.setattr(compute, "_CACHE", store)
    settings = ComputeSettings(bandwidth_mode="volume rule", overlap_max_n=100_000,
                               learning_max_n=50).frozen()
    res = run_pipeline([FileSpec(str(MELT), MELT.name, "trajectory", index=INDEX)], settings)
    assert res.reference.startswith("first frame")
    dash = {"h": res.h, "H": res.frames["H"].to_numpy(),
            "mean_dH": res.frames["mean_dH"].to_numpy(),
            "frac_novel": res.frames["frac_novel"].to_numpy()}
    _assert_same(api, dash, names=("h", "H", "mean_dH", "frac_novel"))
    np.testing.assert_allclose(res.atoms["dH"].to_numpy(np.float64), api["dH"], rtol=1e-6,
                               atol=1e-5)
    assert store.hits >= 1 and store.misses == 0  # the CLI's descriptors


# ----------------------------------------------------------------------------
# Per-group overlap with a group that has no periodic cell
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three frames of the melt cut free of their cell: a group without a volume."""
    from ase.io import read, write

    frames = read(str(MELT), index=INDEX)
    for atoms in frames:
        atoms.set_cell(None)
        atoms.pbc = False
    path = tmp_path_factory.mktemp("cluster") / "cu_cluster.extxyz"
    write(path, frames, format="extxyz")
    return path


def test_per_group_overlap_without_a_cell_agrees(tmp_path, monkeypatch, capsys, cluster):
    """The volume rule per column needs every group's volume; with a group without a
    cell both front ends follow the one policy of :func:`quests_core.loading.overlap_bandwidths`:
    every column gets one h, the volume rule of all groups' frames pooled, and a note
    says so (the CLI stopped with an error, the dashboard used the reference's h)."""
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec
    from quests_core.loading import overlap_bandwidths
    from quests_core.settings import Settings

    sets = {p.name: Dataset.from_files([str(p)], index=INDEX) for p in (REF, TRAJ, cluster)}
    x = {name: qc.descriptors(list(ds.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
         for name, ds in sets.items()}
    pooled = frames_bandwidth(pd.concat([ds.frames for ds in sets.values()]))
    h, note = overlap_bandwidths({n: ds.frames for n, ds in sets.items()},
                                 Settings(bandwidth_rule="volume"))
    assert h == pooled and "cu_cluster.extxyz: the volume rule needs periodic cells" in note
    api = overlap_matrix(x, pooled).matrix
    # the pooled h is neither the reference's nor the cell-less group's fallback of old
    assert abs(pooled - frames_bandwidth(sets[REF.name].frames)) > 1e-5

    cache = tmp_path / "cache"
    assert cli(["overlap", str(REF), str(TRAJ), str(cluster), "--index", INDEX,
                "--bandwidth", "auto", "-o", str(tmp_path / "o.json"),
                "--cache-dir", str(cache), "--no-progress"]) == 0
    assert ("warning: overlap: cu_cluster.extxyz: the volume rule needs periodic cells (no "
            f"volume per atom); every column uses h = {pooled:.4g} 1/Å") \
        in capsys.readouterr().err
    cli_matrix = np.array(json.loads((tmp_path / "o.json").read_text())["summary"]["matrix"])
    np.testing.assert_allclose(cli_matrix, api, rtol=1e-12, atol=1e-12)

    monkeypatch.setattr(compute, "_CACHE", DescriptorCache(cache))
    files = [FileSpec(str(REF), REF.name, "reference", index=INDEX),
             FileSpec(str(TRAJ), TRAJ.name, "trajectory", index=INDEX),
             FileSpec(str(cluster), cluster.name, "test", index=INDEX)]
    settings = ComputeSettings(bandwidth_mode="volume rule", overlap_max_n=100_000,
                               learning_max_n=50).frozen()
    res = run_pipeline(files, settings)
    by_file = res.overlap["file"]
    np.testing.assert_allclose(by_file.matrix, api, rtol=1e-12, atol=1e-12)
    assert set(by_file.bandwidths.values()) == {pooled}
    assert any(w.startswith("Overlap by source: cu_cluster.extxyz: the volume rule needs "
                            "periodic cells") for w in res.warnings), res.warnings
    # the run's own h stays the reference's (the overlap's fallback is the matrix's own)
    assert res.h == frames_bandwidth(sets[REF.name].frames)


def test_overlap_by_label_agrees(tmp_path, monkeypatch):
    """Per-group overlap by a per-frame column: ``overlap --by label --bandwidth auto`` and
    the dashboard's overlap by label give the same matrix and each column's own h(V)."""
    import dashboard.compute as compute
    from dashboard.pipeline import run_pipeline
    from dashboard.state import ComputeSettings, FileSpec

    labelled, index = DATA / "cu_dataset_labelled.extxyz", "::5"  # one frame per label
    cache = tmp_path / "cache"
    assert cli(["overlap", str(labelled), "--index", index, "--by", "label", "--bandwidth",
                "auto", "-o", str(tmp_path / "o.json"), "--cache-dir", str(cache),
                "--no-progress"]) == 0
    summary = json.loads((tmp_path / "o.json").read_text())["summary"]
    cli_matrix = pd.DataFrame(summary["matrix"], index=summary["labels"],
                              columns=summary["labels"])

    ds = Dataset.from_files([str(labelled)], index=index)
    x = qc.descriptors(list(ds.structures), k=DEFAULTS.k, cutoff=DEFAULTS.cutoff)
    per_atom = np.repeat(ds.frames["label"].to_numpy(), ds.frames["n_atoms"].to_numpy())
    names = list(pd.unique(ds.frames["label"]))
    h = {n: frames_bandwidth(ds.frames[ds.frames["label"] == n]) for n in names}
    assert len(set(h.values())) > 1  # the labels have different volumes
    api = overlap_matrix({n: x[per_atom == n] for n in names}, h).matrix
    np.testing.assert_allclose(cli_matrix.loc[names, names].to_numpy(), api, rtol=1e-12,
                               atol=1e-12)

    monkeypatch.setattr(compute, "_CACHE", DescriptorCache(cache))
    settings = ComputeSettings(bandwidth_mode="volume rule", overlap_max_n=100_000,
                               learning_max_n=50).frozen()
    res = run_pipeline([FileSpec(str(labelled), labelled.name, "reference", index=index)],
                       settings)
    by_label = res.overlap["label"]
    board = pd.DataFrame(by_label.matrix, index=by_label.names, columns=by_label.names)
    np.testing.assert_allclose(board.loc[names, names].to_numpy(), api, rtol=1e-12,
                               atol=1e-12)
    assert by_label.bandwidths == pytest.approx(h, rel=1e-12)

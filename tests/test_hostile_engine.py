"""Hostile input to the engine (issue 11): refused before any compiled code runs with a
one-line QuestsError naming the structure (and file, axis), never a crash, hang or NaN;
and hostile-but-accepted input run once with Numba's bounds checks on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import quests_core as qc
from quests_core import neighbors
from quests_core.errors import QuestsError

ROOT = Path(__file__).resolve().parents[1]


def cu(reps=1, a=3.61, seed=0, rattle=0.02):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (reps, reps, reps)
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms


def refused(call, *fragments, seconds=5.0):
    """``call()`` raises one QuestsError line containing every fragment, quickly."""
    t0 = time.perf_counter()
    with pytest.raises(QuestsError) as err:
        call()
    elapsed = time.perf_counter() - t0
    text = str(err.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert elapsed < seconds, f"refusal took {elapsed:.1f} s: {text}"
    return text


def with_others(bad, position):
    """``bad`` as structure ``position`` of a list of good structures."""
    good = cu()
    return [good] * position + [bad] + [good]


def _scaled(atoms, factor):
    atoms.set_cell(atoms.cell * factor, scale_atoms=True)
    return atoms


# --------------------------------------------------------------------------- structures


def test_absurd_coordinates():
    far = Atoms("Cu3", positions=[[0, 0, 0], [1e300, 0, 0], [0, 1e300, 2]])
    refused(lambda: qc.descriptors(with_others(far, 2)), "structure 2:", "atom 1",
            "coordinate x = 1e+300", "limit")
    periodic = far.copy()
    periodic.cell = [10, 10, 10]
    periodic.pbc = True
    refused(lambda: qc.descriptors(periodic), "structure 0:", "atom 1", "x = 1e+300")
    span = Atoms("Cu3", positions=[[0, 0, 0], [0, 0, 0], [3, 2, 1e12]])
    refused(lambda: qc.descriptors(span), "atom 2 has coordinate z = 1e+12")
    span.cell, span.pbc = [10, 10, 10], True
    refused(lambda: qc.descriptors(span), "atom 2 has coordinate z")
    huge_cell = Atoms("Cu", positions=[[0, 0, 0]], cell=[1e13, 10, 10], pbc=True)
    refused(lambda: qc.descriptors(huge_cell), "cell vector a on periodic axis x", "1e+13")
    nan = Atoms("Cu2", positions=[[0, 0, 0], [0, np.inf, 0]])
    refused(lambda: qc.descriptors(with_others(nan, 1)), "structure 1:", "atom 1",
            "NaN or Inf", "y = inf")


def test_absurd_parameters():
    atoms = cu()
    refused(lambda: qc.descriptors(atoms, cutoff=1e-300), "cutoff must be between")
    refused(lambda: qc.descriptors(atoms, cutoff=1e300), "cutoff must be between")
    refused(lambda: qc.descriptors(atoms, cutoff="abc"), "cutoff must be a number")
    refused(lambda: qc.descriptors(atoms, cutoff=None), "cutoff must be a number")
    refused(lambda: qc.descriptors(atoms, k=100000), "k must be an integer between 1 and 1024")
    refused(lambda: qc.descriptors(atoms, k=1e300), "k must be an integer")
    refused(lambda: qc.descriptors(atoms, k="abc"), "k must be")
    refused(lambda: qc.descriptors(atoms, k=float("nan")), "k must be")
    refused(lambda: qc.descriptors(atoms, dtype="abc"), "dtype")
    refused(lambda: qc.descriptors(atoms, n_threads="abc"), "threads must be an integer")
    refused(lambda: qc.set_num_threads("abc"), "threads must be an integer")
    refused(lambda: qc.set_num_threads(None), "threads must be an integer")
    refused(lambda: qc.descriptors(atoms, species=5), "species must be a list")
    refused(lambda: qc.approx_delta_entropy(np.ones((2, 3)), np.ones((4, 3)), n_neighbors="x"),
            "n_neighbors must be a number")


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: _scaled(cu(3), 1e-6),
         ["atoms per cutoff sphere", "periodic cell", "the limit is 10,000"]),
        (lambda: Atoms("Cu20000", positions=np.random.default_rng(0).random((20000, 3)) * 5,
                       cell=[5, 5, 5], pbc=True),
         ["about 83,776 atoms per cutoff sphere", "20,000 atoms in a periodic cell of 125 Å^3"]),
        (lambda: Atoms("Cu100000", positions=np.random.default_rng(0).random((100000, 3)) * 10),
         ["atoms per cutoff sphere", "in a cube of 5 Å"]),
        (lambda: Atoms("Cu30001", positions=np.vstack(
            [np.random.default_rng(0).random((30000, 3)) * 10, [[4e6, 4e6, 4e6]]])),
         ["atoms per cutoff sphere", "in one cube of 5 Å"]),
    ],
    ids=["tiny_cell_scaled", "2e4_in_5A_periodic", "1e5_in_10A", "dense_blob_far_atom"],
)
def test_density_bombs_are_refused_quickly(make, fragments):
    bad = make()
    refused(lambda: qc.descriptors(with_others(bad, 1)), "structure 1:", *fragments)


def test_huge_cutoff_on_a_small_periodic_cell_is_refused():
    atoms = cu(6)  # 21.7 Å periodic cell, 864 atoms: hung before
    refused(lambda: qc.descriptors(atoms, cutoff=100), "atoms per cutoff sphere",
            "cutoff 100 Å", "limit is 10,000")


def test_periodic_images_bombs():
    slab = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2]], cell=[1e-5, 1e-5, 0],
                 pbc=(True, True, False))
    refused(lambda: qc.descriptors(slab), "structure 0:", "atoms per cutoff sphere",
            "periodic images of each atom alone", "face a, b")
    needle = Atoms("Cu", positions=[[0, 0, 0]], cell=[1e-4, 1e3, 1e3], pbc=True)
    refused(lambda: qc.descriptors(needle), "about 100,000 atoms per cutoff sphere",
            "cell vector a is 0.0001 Å long")
    wire = Atoms("Cu", positions=[[0, 0, 0]], cell=[0, 1e-5, 0], pbc=(False, True, False))
    refused(lambda: qc.descriptors(wire), "cell vector b is 1e-05 Å long")
    # images allowed one by one, too many all together
    thin = Atoms("Cu300", positions=np.random.default_rng(0).random((300, 3)) * [3e-4, 50, 50],
                 cell=[3e-4, 100, 0], pbc=(True, True, False))
    refused(lambda: qc.descriptors(thin, cutoff=1.0), "periodic cell too thin for the cutoff",
            "periodic axis x", "periodic images")


@pytest.mark.parametrize(
    ("make", "fragments"),
    [
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[5, 5, 0], pbc=True),
         ["structure 3: cell vector c has zero length on periodic axis z"]),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], pbc=True),
         ["structure 3: periodic along x, y, z but the structure has no cell"]),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], pbc=(False, True, False)),
         ["structure 3: periodic along y but the structure has no cell"]),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]],
                       cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0]], pbc=True),
         ["structure 3: cell has zero volume", "periodic axis x, y, z", "coplanar"]),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]],
                       cell=[[5, 0, 0], [10, 0, 0], [0, 0, 5]], pbc=(True, True, False)),
         ["structure 3: cell has zero volume", "periodic axis x, y"]),
        (lambda: Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]],
                       cell=[[5, 0, 0], [0, np.nan, 0], [0, 0, 5]], pbc=True),
         ["structure 3: cell vector b has NaN or Inf entries on periodic axis y"]),
    ],
    ids=["zero_c", "no_cell", "no_cell_y", "flat", "collinear_slab", "nan_cell"],
)
def test_degenerate_periodic_cells_name_structure_and_axis(make, fragments):
    refused(lambda: qc.descriptors(with_others(make(), 3)), *fragments)


def test_non_periodic_cell_vectors_may_be_anything():
    base = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 1.0]],
                 cell=[[7, 0, 0], [0, 7, 0], [0, 0, 9]], pbc=(True, True, False))
    ref = qc.descriptors(base, k=8)
    for c in ([np.nan, 0, 0], [7, 7, 0], [0, 0, 0], [1e30, 0, 0]):
        slab = base.copy()
        cell = slab.cell.array.copy()
        cell[2] = c
        slab.set_cell(cell)
        np.testing.assert_allclose(qc.descriptors(slab, k=8), ref, rtol=1e-12, atol=1e-12)


def test_sparse_cloud_work_limit(monkeypatch):
    groups = Atoms("Cu2000", positions=np.vstack([
        np.random.default_rng(1).random((1000, 3)) * 20,
        np.random.default_rng(2).random((1000, 3)) * 20 + 3e6,
    ]))
    x = qc.descriptors(groups, k=4)
    assert np.isfinite(x).all()
    monkeypatch.setattr(neighbors, "_MAX_EVALS", 10_000)
    monkeypatch.setattr(neighbors, "_MAX_EVALS_PER_ATOM", 1)
    refused(lambda: qc.descriptors(groups, k=4), "dense groups far apart",
            "distance evaluations")


def test_errors_name_the_file_and_frame():
    bad = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[5, 5, 0], pbc=True)
    text = refused(lambda: qc.descriptors([cu(), bad], source="run.extxyz", indices=[40, 41]),
                   "run.extxyz, structure 41: cell vector c has zero length on periodic axis z")
    err = QuestsError("cell vector c has zero length", index=1)
    moved = err.located(source="f.xyz", index=7)
    assert str(moved) == "f.xyz, structure 7: cell vector c has zero length"
    assert moved.detail == err.detail and moved.index == 7
    assert text.count("structure") == 1
    refused(lambda: qc.descriptors([cu()], indices=[1, 2]), "indices has 2 entries")


def test_accepted_edge_cases_are_finite():
    one = Atoms("Cu", positions=[[0, 0, 0]], cell=bulk("Cu").cell, pbc=True)  # thinner than rc
    pair = Atoms("Cu2", positions=[[1, 1, 1], [1, 1, 1]])  # overlapping atoms
    lone = Atoms("Cu", positions=[[4.9e6, -4.9e6, 0]])
    unwrapped = cu(1)
    unwrapped.positions += 3.61 * 1e5
    x = qc.descriptors([one, pair, lone, unwrapped], k=8)
    assert np.isfinite(x).all() and x.max() <= 1.01e15
    np.testing.assert_allclose(qc.descriptors(unwrapped, k=8), qc.descriptors(cu(1), k=8),
                               atol=1e-8)
    near_limit = Atoms("Cu", positions=[[0, 0, 0]], cell=bulk("Cu").cell, pbc=True)
    assert np.isfinite(qc.descriptors(near_limit, k=4, cutoff=28.0)).all()  # ~7,800 / sphere


def test_compact_cluster_in_one_cube_is_not_a_density_bomb():
    # 4,000 atoms of a 38 Å nanoparticle all inside one 50 Å cutoff cube: 4,000 in range
    # of any atom (under the limit), not 4.19 x 4,000
    rng = np.random.default_rng(5)
    ball = rng.normal(size=(4000, 3))
    ball *= (19.0 * rng.random(4000) ** (1 / 3) / np.linalg.norm(ball, axis=1))[:, None]
    x = qc.descriptors(Atoms("Cu4000", positions=ball + 25.0), k=2, cutoff=50.0)
    assert np.isfinite(x).all()


def test_top_k_selection_matches_a_brute_force_sort():
    atoms = cu(2, rattle=0.1)
    atoms.pbc = False
    k, rc = 6, 6.0
    x = qc.descriptors(atoms, k=k, cutoff=rc)
    pos = atoms.positions
    for i in (0, 5, 17):
        d = np.linalg.norm(pos - pos[i], axis=1)
        d[i] = np.inf
        near = np.argsort(d, kind="stable")[:k]
        near = near[d[near] < rc]
        r = d[near]
        s = 1 - (r / rc) ** 2
        np.testing.assert_allclose(x[i, : len(r)], s * s / (r + 1e-15), rtol=1e-12)


# ----------------------------------------------------------------------------- entropy


@pytest.fixture(scope="module")
def xs():
    return np.random.default_rng(0).random((30, 7)) * 0.3


@pytest.mark.parametrize(
    ("call", "fragments"),
    [
        (lambda x: qc.entropy(x, h=1e-300), ["bandwidth h = 1e-300", "out of range"]),
        (lambda x: qc.entropy(x, h=1e300), ["bandwidth h = 1e+300", "out of range"]),
        (lambda x: qc.delta_entropy(x, x, h=np.array([0.01, 1e9])), ["h = 1e+09", "out of range"]),
        (lambda x: qc.entropy(x, h="abc"), ["bandwidth h must be a number"]),
        (lambda x: qc.entropy(x, h=object()), ["bandwidth h must be"]),
        (lambda x: qc.entropy("abc"), ["x must be a 2-D numeric descriptor array"]),
        (lambda x: qc.entropy(np.array([["a", "b"]])), ["numeric descriptor array"]),
        (lambda x: qc.entropy(np.array([[None, 1.0]])), ["NaN or Inf"]),
        (lambda x: qc.entropy(x.astype(complex)), ["numeric descriptor array"]),
        (lambda x: qc.entropy(x * 1e200), ["x has values of magnitude", "within ±1e+16"]),
        (lambda x: qc.delta_entropy(x, x * 1e155), ["reference descriptors x has values"]),
        (lambda x: qc.entropy(np.full((3, 10**6), 1e16)), ["squared distances"]),
        (lambda x: qc.entropy(x, n_threads="abc"), ["threads must be an integer"]),
    ],
)
def test_entropy_refuses(xs, call, fragments):
    refused(lambda: call(xs), *fragments)


def test_entropy_unknown_keyword_is_a_type_error(xs):
    with pytest.raises(TypeError, match="batch_size"):
        qc.entropy(xs, batch_size=4)
    doc = (ROOT / "docs" / "architecture.md").read_text()
    assert "batch_size" not in next(line for line in doc.splitlines() if "entropy(x," in line)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("h", [1e-6, 0.015, 1e6])
@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e16])
def test_entropy_finite_at_the_limits(precision, h, scale):
    x = (np.random.default_rng(3).random((20, 63)) * 2 - 1) * scale
    y = -x[:4] / 3
    for value in (qc.entropy(x, h=h, precision=precision),
                  qc.delta_entropy(y, x, h=h, precision=precision),
                  qc.diversity(x, h=h, precision=precision)):
        assert np.all(np.isfinite(value))
    assert 0 <= qc.entropy(x, h=h, precision=precision) <= np.log(20) + 1e-9


def test_numeric_strings_still_work(xs):
    assert qc.entropy(xs, h="0.05") == qc.entropy(xs, h=0.05)
    np.testing.assert_array_equal(qc.descriptors(cu(), k="4", cutoff="3.0"),
                                  qc.descriptors(cu(), k=4, cutoff=3.0))


# ------------------------------------------------------------------ bounds-checked kernels

_BOUNDSCHECKED = textwrap.dedent(
    """
    import numpy as np
    from ase import Atoms
    from ase.build import bulk
    import numba
    import quests_core as qc

    @numba.njit
    def _probe(a, i):
        return a[i]

    try:  # the bounds checks are really on
        _probe(np.zeros(2), 5)
        raise SystemExit("NUMBA_BOUNDSCHECK had no effect")
    except IndexError:
        pass

    def cu(reps=1):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (reps, reps, reps)
        a.rattle(0.05, seed=1)
        return a

    prim = Atoms("Cu", positions=[[0, 0, 0]], cell=bulk("Cu").cell, pbc=True)
    thin = cu(2)
    thin.set_cell(thin.cell.array * [1, 1, 0.2], scale_atoms=True)  # 1.4 Å: < cutoff
    slab = cu(2); slab.pbc = (True, True, False)
    wire = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]],
                 cell=[10.0, 0.0, 0.0], pbc=(True, False, False))
    single = Atoms("Cu", positions=[[1, 2, 3]])
    overlap = Atoms("Cu3", positions=[[1, 1, 1], [1, 1, 1], [1, 1, 1.5]], cell=[4, 4, 4],
                    pbc=True)
    far = Atoms("Cu2", positions=[[4.9e6, 0, 0], [-4.9e6, 1, 4.9e6]])
    unwrapped = cu(1); unwrapped.positions += 3.61e5
    groups = Atoms("Cu40", positions=np.vstack([np.random.default_rng(0).random((20, 3)) * 4,
                                                np.random.default_rng(1).random((20, 3)) * 4
                                                + 2e6]))
    skew = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]],
                 cell=[[3, 0, 0], [2.9, 0.3, 0], [0.1, 0.2, 2.5]], pbc=True)
    mixed = cu(1); mixed.symbols[:2] = "Ni"
    cases = [
        (prim, dict(k=32, cutoff=5.0)), (prim, dict(k=4, cutoff=20.0)),
        (thin, dict(k=32, cutoff=5.0)), (slab, {}), (wire, dict(k=3)), (single, {}),
        (overlap, dict(k=8)), (far, {}), (unwrapped, dict(k=8)), (groups, dict(k=5)),
        (skew, dict(k=16)), (cu(2), dict(k=100, cutoff=4.0)), (cu(1), dict(k=1)),
        (mixed, dict(k=6, species=["Cu", "Ni"])),
    ]
    xs = []
    for atoms, kw in cases:
        x = qc.descriptors(atoms, **kw)
        assert x.shape[0] == len(atoms) and np.isfinite(x).all(), (atoms, kw)
        xs.append(x)
    x = qc.descriptors([cu(1), single, far], k=4)
    for h in (1e-6, 0.015, 1e6):
        for precision in ("float64", "float32"):
            try:
                values = [qc.entropy(x, h=h, precision=precision),
                          qc.delta_entropy(x[:3], x, h=h, precision=precision),
                          qc.delta_entropy(x, x[:1], h=np.array([h, 0.1]), precision=precision)]
            except qc.QuestsError as err:  # float32 cannot resolve h = 1e-6
                assert precision == "float32" and h == 1e-6, err
                assert "use precision='float64'" in str(err)
                continue
            assert all(np.isfinite(v).all() for v in values), (h, precision)
    assert np.isfinite(qc.entropy(np.array([[1e16, -1e16]]), h=1e-6))
    for m in (1, 3, 1000):  # more neighbours than references, duplicates, empty cells
        approx = qc.approx_delta_entropy(x[:5], x, n_neighbors=m, n_probe=1)
        assert np.isfinite(approx).all(), m
    try:  # overlapping atoms: descriptors near 1e15, too close together to resolve
        qc.entropy(qc.descriptors([cu(1), overlap], k=4))
        raise SystemExit("overlapping atoms were not refused")
    except qc.QuestsError as err:
        assert "kernel sums would be noise" in str(err)
    # seeded random hostile structures: refused with a QuestsError or computed finite
    rng = np.random.default_rng(11)
    accepted = 0
    for trial in range(60):
        n = int(rng.choice([1, 2, 3, 20, 60]))
        cell = rng.normal(size=(3, 3)) * 10 ** rng.uniform(-7, 3, size=(3, 1))
        if rng.random() < 0.2:
            cell[rng.integers(3)] = 0
        pos = rng.normal(size=(n, 3)) * 10 ** rng.uniform(-6, 8)
        if rng.random() < 0.2:
            pos[rng.integers(n)] = pos[0]
        atoms = Atoms(f"Cu{n}", positions=pos, cell=cell, pbc=rng.random(3) < 0.6)
        try:
            x = qc.descriptors(atoms, k=int(rng.choice([1, 4, 32])),
                               cutoff=float(10 ** rng.uniform(-2.5, 1.5)))
        except qc.QuestsError as err:
            assert chr(10) not in str(err) and str(err).startswith("structure 0: "), err
            continue
        assert np.isfinite(x).all(), trial
        accepted += 1
    assert accepted >= 10, accepted
    print("BOUNDSCHECK-OK", len(cases), accepted)
    """
)


def test_hostile_but_accepted_inputs_under_numba_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               QUESTS_BACKEND="numba", NUMBA_NUM_THREADS="2")
    env.pop("NUMBA_DISABLE_JIT", None)
    run = subprocess.run([sys.executable, "-c", _BOUNDSCHECKED], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "BOUNDSCHECK-OK" in run.stdout

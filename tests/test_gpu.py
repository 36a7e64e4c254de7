"""PyTorch kernel sums and backend selection.

* CPU-device tests run the torch code path against the Numba kernels (skipped
  when torch is not installed);
* ``@pytest.mark.gpu`` tests need a CUDA device and are skipped without one.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from conftest import noisy_cu

import quests_core as qc
from quests_core import Cancelled, QuestsError
from quests_core import backend as backend_mod
from quests_core.backend import Backend, available_backends, select_backend
from quests_core.gpu import cuda_available, log_kernel_sums_torch, torch_available
from quests_core.kernels import log_kernel_sums

needs_torch = pytest.mark.skipif(not torch_available(), reason="PyTorch is not installed")
needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
HS = np.array([0.01, 0.015, 0.05])


@pytest.fixture(scope="module")
def xy():
    """Reference and test descriptors of noisy Cu (different noise: some dH > 0)."""
    x = qc.descriptors(noisy_cu((3, 3, 3), noise=0.05, seed=1))
    y = qc.descriptors(noisy_cu((3, 3, 3), noise=0.09, seed=2))
    return y, x


def far_apart(n, d=8, spacing=1.0):
    x = np.zeros((n, d))
    x[:, 0] = spacing * np.arange(n)
    return x


def assert_relative(actual, desired, rel):
    scale = np.maximum(1.0, np.abs(desired))
    assert np.max(np.abs(actual - desired) / scale) <= rel


# ----------------------------------------------------------------------------
# torch on the CPU device: parity with the Numba path
# ----------------------------------------------------------------------------


@needs_torch
def test_torch_cpu_float64_matches_numba(xy):
    y, x = xy
    want = log_kernel_sums(y, x, HS)
    got = log_kernel_sums_torch(y, x, HS, device="cpu", block_rows=50, block_cols=40)
    assert got.shape == (len(y), 3) and got.dtype == np.float64
    assert_relative(got, want, 1e-9)
    assert np.all(np.diff(got, axis=1) > 0)  # wider kernels, larger sums
    same = log_kernel_sums_torch(x, x, HS, device="cpu")
    assert_relative(same, log_kernel_sums(x, x, HS), 1e-9)


@needs_torch
def test_torch_cpu_float32_within_tolerance(xy):
    y, x = xy
    want = log_kernel_sums(y, x, HS, precision="float64")
    got = log_kernel_sums_torch(y, x, HS, device="cpu", precision="float32")
    assert np.max(np.abs(got - want)) <= 1e-3
    # float32 inputs select float32 by default, like the Numba path
    y32, x32 = y.astype(np.float32), x.astype(np.float32)
    auto = log_kernel_sums_torch(y32, x32, HS, device="cpu")
    as64 = log_kernel_sums_torch(y32, x32, HS, device="cpu", precision="float64")
    assert not np.array_equal(auto, as64)
    assert np.max(np.abs(auto - as64)) <= 1e-3
    assert np.max(np.abs(auto - log_kernel_sums(y32, x32, HS))) <= 1e-4


@needs_torch
def test_torch_exact_duplicates_and_far_points():
    x = far_apart(40, spacing=1.0)  # no two points within 60 h of each other
    got = log_kernel_sums_torch(x[:7], x, np.array([0.015]), device="cpu", precision="float32")
    np.testing.assert_array_equal(got, 0.0)  # the self term exactly, nothing else
    far = x[:3] + np.array([0.5] + [0.0] * 7)  # halfway between two points
    got = log_kernel_sums_torch(far, x, np.array([0.015]), device="cpu")
    expected = np.log(2.0) - 0.25 / (2 * 0.015**2)  # two terms at distance 0.5, finite
    np.testing.assert_allclose(got[1:, 0], expected, rtol=1e-12)
    assert np.all(np.isfinite(got))


@needs_torch
def test_torch_entropy_identity(xy):
    _, x = xy
    logs = log_kernel_sums_torch(x, x, HS, device="cpu")
    ent = np.log(len(x)) - logs.mean(axis=0)
    np.testing.assert_allclose(ent, qc.entropy(x, HS), rtol=1e-10)
    assert np.all(ent >= 0) and np.all(ent <= np.log(len(x)))


@needs_torch
def test_torch_progress_and_cancel(xy):
    y, x = xy
    calls = []
    log_kernel_sums_torch(
        y, x, HS, device="cpu", block_rows=40, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (len(y), len(y)) and len(calls) == -(-len(y) // 40)
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        log_kernel_sums_torch(y, x, HS, device="cpu", cancel=event)


@needs_torch
@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")
def test_torch_cuda_request_without_device_raises(xy):
    y, x = xy
    with pytest.raises(QuestsError, match="CUDA"):
        log_kernel_sums_torch(y, x, HS, device="cuda")
    with pytest.raises(QuestsError, match="CUDA"):
        select_backend("torch-cuda")


def test_missing_torch_is_a_quests_error(monkeypatch, xy):
    y, x = xy
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(QuestsError, match="PyTorch"):
        log_kernel_sums_torch(y, x, HS)
    monkeypatch.setattr("quests_core.gpu.torch_available", lambda: False)
    with pytest.raises(QuestsError, match="PyTorch"):
        select_backend("torch-cpu")


# ----------------------------------------------------------------------------
# backend selection
# ----------------------------------------------------------------------------


def test_backend_names_and_aliases():
    assert select_backend("numba") == Backend("numba", "cpu")
    assert select_backend("cpu") == Backend("numba", "cpu")
    assert select_backend(Backend("numba", "cpu")).name == "numba"
    with pytest.raises(QuestsError, match="unknown backend"):
        select_backend("opencl")
    names = available_backends()
    assert "numba" in names
    assert ("torch-cpu" in names) == torch_available()
    assert ("torch-cuda" in names) == cuda_available()


def test_auto_picks_cuda_only_when_present(monkeypatch):
    monkeypatch.delenv(backend_mod.BACKEND_ENV, raising=False)
    expected = "torch-cuda" if cuda_available() else "numba"
    assert select_backend("auto").name == expected
    assert select_backend(None).name == expected
    # small problems stay on the CPU whatever the hardware
    assert select_backend("auto", pairs=backend_mod.GPU_MIN_PAIRS - 1).name == "numba"
    assert select_backend("auto", pairs=backend_mod.GPU_MIN_PAIRS).name == expected
    monkeypatch.setenv(backend_mod.BACKEND_ENV, "numba")
    assert select_backend("auto").name == "numba"
    monkeypatch.setenv(backend_mod.BACKEND_ENV, "nonsense")
    with pytest.raises(QuestsError, match="unknown backend"):
        select_backend("auto")


def test_numba_backend_is_the_kernels_module(xy):
    y, x = xy
    got = backend_mod.backend_log_kernel_sums(y, x, HS, backend="numba")
    np.testing.assert_array_equal(got, log_kernel_sums(y, x, HS))


@needs_torch
def test_torch_cpu_backend_dispatch(xy):
    y, x = xy
    engine = select_backend("torch-cpu")
    assert engine.device == "cpu" and not engine.is_gpu
    assert_relative(engine.log_kernel_sums(y, x, HS), log_kernel_sums(y, x, HS), 1e-9)


# ----------------------------------------------------------------------------
# on a CUDA device
# ----------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_cuda_float64_within_1e6_relative_of_cpu(xy):
    y, x = xy
    want = log_kernel_sums(y, x, HS)
    got = log_kernel_sums_torch(y, x, HS, device="cuda", precision="float64")
    assert_relative(got, want, 1e-6)
    assert_relative(log_kernel_sums_torch(x, x, HS, device="cuda"), log_kernel_sums(x, x, HS), 1e-6)


@pytest.mark.gpu
@needs_cuda
def test_cuda_float32_and_duplicates(xy):
    y, x = xy
    got = log_kernel_sums_torch(y, x, HS, device="cuda", precision="float32")
    assert np.max(np.abs(got - log_kernel_sums(y, x, HS))) <= 1e-3
    pts = far_apart(40)
    dup = log_kernel_sums_torch(pts[:5], pts, np.array([0.015]), device="cuda", precision="float32")
    np.testing.assert_array_equal(dup, 0.0)


@pytest.mark.gpu
@needs_cuda
def test_cuda_is_the_automatic_choice(monkeypatch, xy):
    monkeypatch.delenv(backend_mod.BACKEND_ENV, raising=False)
    engine = select_backend("auto")
    assert engine.name == "torch-cuda" and engine.is_gpu
    y, x = xy
    assert_relative(
        engine.log_kernel_sums(y, x, HS, precision="float64"), log_kernel_sums(y, x, HS), 1e-6
    )

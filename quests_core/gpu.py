"""Kernel sums with PyTorch: the GPU backend (and a CPU-device twin for testing).

:func:`log_kernel_sums_torch` has the contract of
:func:`quests_core.kernels.log_kernel_sums`: ``log sum_j exp(-|y_i - x_j|^2 / 2h^2)``
for every test row and bandwidth, float64 result of shape ``(len(y), len(h))``.
The numerics follow the Numba path:

* both sets are centred on the reference mean;
* squared distances come from one GEMM per block, ``|y|^2 + |x|^2 - 2 y.x``,
  clamped at zero, in the working precision (float32 or float64);
* exponentials are taken relative to the block's nearest reference point and
  summed in float64; blocks of reference columns are combined with
  ``logaddexp``;
* the nearest pair of every block is recomputed exactly (float64 difference of
  the stored vectors), so an exact duplicate contributes exactly 1.

``torch`` is imported lazily: importing this module never needs it. TF32 is
never used for the GEMM (it would lose about 3 decimal digits): the call runs
under ``torch.backends.cuda.matmul.allow_tf32 = False``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Callable

import numpy as np

from .errors import Cancelled, QuestsError
from .kernels import _resolve_dtype

#: rows x reference columns per block on a CUDA device (x 4 B = 256 MiB of distances)
CUDA_BLOCK_ROWS = 16384
CUDA_BLOCK_COLS = 4096
#: smaller blocks on the CPU device (the block stays in cache)
CPU_BLOCK_ROWS = 512
CPU_BLOCK_COLS = 2048

__all__ = [
    "cuda_available",
    "log_kernel_sums_torch",
    "torch_available",
]


def torch_available() -> bool:
    """True when ``torch`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """True when ``torch`` is installed and sees at least one CUDA device."""
    if not torch_available():
        return False
    try:
        import torch
    except ImportError:  # pragma: no cover - broken installation
        return False
    return bool(torch.cuda.is_available())


def _torch():
    try:
        import torch
    except ImportError:
        raise QuestsError(
            "the torch backend needs PyTorch (pip install torch); it is not installed"
        ) from None
    return torch


def _device(torch, device):
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QuestsError(f"device {device!r} requested but torch sees no CUDA device")
    return dev


@contextlib.contextmanager
def _no_tf32(torch):
    """Full-precision float32 GEMM on CUDA inside the block."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _block_log_sums(torch, yc, ny, xb, nxb, inv2h2):
    """Log kernel sums of one (rows x columns) block, float64 ``(rows, len(h))``.

    ``yc``/``xb`` are centred rows in the working dtype, ``ny``/``nxb`` their
    squared norms, ``inv2h2`` the float64 ``1 / 2h^2`` on the device.
    """
    d = torch.mm(yc, xb.T)
    d.mul_(-2.0).add_(ny[:, None]).add_(nxb[None, :]).clamp_min_(0.0)
    approx, arg = d.min(dim=1)
    diff = yc.double() - xb[arg].double()
    exact = (diff * diff).sum(dim=1)
    ref = torch.minimum(approx.double(), exact)  # float64 reference distance per row
    ref_w = ref.to(d.dtype)
    out = torch.empty((yc.shape[0], inv2h2.shape[0]), dtype=torch.float64, device=yc.device)
    t = torch.empty_like(d)
    for k in range(inv2h2.shape[0]):
        a = inv2h2[k]
        torch.sub(d, ref_w[:, None], out=t)
        t.mul_(-a.to(d.dtype)).clamp_(min=-80.0).exp_()
        s = t.sum(dim=1, dtype=torch.float64)
        # swap the expanded nearest term for the exact one
        near = torch.exp((-(approx.to(d.dtype) - ref_w) * a.to(d.dtype)).clamp(min=-80.0))
        s = s - near.double() + torch.exp(-(exact - ref) * a)
        out[:, k] = torch.log(s) - ref * a
    return out


def log_kernel_sums_torch(
    y: np.ndarray,
    x: np.ndarray,
    h: np.ndarray,
    *,
    precision=None,
    device=None,
    block_rows: int | None = None,
    block_cols: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> np.ndarray:
    """``log sum_j K(y_i, x_j)`` for every row of ``y`` and bandwidth in ``h``, with PyTorch.

    Same contract as :func:`quests_core.kernels.log_kernel_sums`.

    Parameters
    ----------
    y, x : numpy.ndarray
        Test and reference descriptors (validated: 2-D, finite, same width).
    h : numpy.ndarray
        1-D positive bandwidths.
    precision : {"float32", "float64"}, optional
        Working precision of the GEMM and the exponentials; default float32
        only when both inputs are float32. Sums and the result are float64.
    device : str or torch.device, optional
        ``"cuda"``, ``"cuda:1"``, ``"cpu"``; default CUDA when available.
    block_rows, block_cols : int, optional
        Block shape (defaults depend on the device).
    progress : callable, optional
        ``progress(done_rows, total_rows)`` after each block of rows.
    cancel : object with ``is_set()``, optional
        Raises :class:`~quests_core.errors.Cancelled` at the next block when set.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(len(y), len(h))``.
    """
    torch = _torch()
    dev = _device(torch, device)
    dt = _resolve_dtype(y, x, precision)
    tdt = torch.float32 if dt == np.float32 else torch.float64
    on_cuda = dev.type == "cuda"
    br = int(block_rows or (CUDA_BLOCK_ROWS if on_cuda else CPU_BLOCK_ROWS))
    bc = int(block_cols or (CUDA_BLOCK_COLS if on_cuda else CPU_BLOCK_COLS))
    if br < 1 or bc < 1:
        raise QuestsError(f"block sizes must be >= 1, got {br} x {bc}")
    h64 = np.asarray(h, dtype=np.float64)
    m, n = y.shape[0], x.shape[0]
    mu = x.mean(axis=0, dtype=np.float64)
    same = y is x
    out = np.empty((m, len(h64)))
    with torch.inference_mode(), _no_tf32(torch):
        inv2h2 = torch.as_tensor(1.0 / (2.0 * h64**2), dtype=torch.float64, device=dev)
        mu_t = torch.as_tensor(mu, device=dev)
        xc_np = np.ascontiguousarray(x - mu, dtype=dt)
        xc = torch.as_tensor(xc_np, device=dev)
        nx = torch.as_tensor(np.einsum("ij,ij->i", xc_np, xc_np, dtype=np.float64), device=dev)
        nx = nx.to(tdt)
        for i0 in range(0, m, br):
            if cancel is not None and cancel.is_set():
                raise Cancelled("computation cancelled")
            i1 = min(i0 + br, m)
            if same:
                yc = xc[i0:i1]
            else:  # rows travel in their own dtype; centred in float64 on the device
                raw = torch.as_tensor(np.ascontiguousarray(y[i0:i1]), device=dev)
                yc = (raw.double() - mu_t).to(tdt)
            ny = (yc.double() * yc.double()).sum(dim=1).to(tdt)
            total = None
            for j0 in range(0, n, bc):
                j1 = min(j0 + bc, n)
                part = _block_log_sums(torch, yc, ny, xc[j0:j1], nx[j0:j1], inv2h2)
                total = part if total is None else torch.logaddexp(total, part)
            out[i0:i1] = total.cpu().numpy()
            if progress is not None:
                progress(i1, m)
    return out

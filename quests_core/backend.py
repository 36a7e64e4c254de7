"""Choice of the engine that computes the kernel sums: Numba on the CPU, or PyTorch.

Backends (every one has the contract of :func:`quests_core.kernels.log_kernel_sums`):

``"numba"``
    The blocked GEMM + vectorised-exp kernels of :mod:`quests_core.kernels` (CPU).
``"torch-cuda"``
    :func:`quests_core.gpu.log_kernel_sums_torch` on a CUDA device.
``"torch-cpu"``
    The same PyTorch code on the CPU device (for testing the torch code path).

``select_backend("auto")`` picks ``"torch-cuda"`` when PyTorch is installed and
sees a CUDA device, ``"numba"`` otherwise; given the size of the problem
(``pairs = len(y) * len(x)``) it keeps problems below :data:`GPU_MIN_PAIRS` on
the CPU, where the transfer and launch overheads of the GPU would dominate. The environment variable
``QUESTS_BACKEND`` (a backend name) overrides what ``"auto"`` picks, e.g.
``QUESTS_BACKEND=numba`` to keep a GPU machine on the CPU path. Aliases:
``"cpu"`` for ``"numba"``, ``"cuda"``/``"gpu"``/``"torch"`` for ``"torch-cuda"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import QuestsError

#: every backend name, in order of preference for "auto"
BACKENDS: tuple[str, ...] = ("torch-cuda", "numba", "torch-cpu")
#: "auto" sends problems with fewer kernel pairs than this to the CPU
GPU_MIN_PAIRS = 20_000_000
#: environment variable overriding the "auto" choice
BACKEND_ENV = "QUESTS_BACKEND"
_ALIASES = {
    "cpu": "numba",
    "cuda": "torch-cuda",
    "gpu": "torch-cuda",
    "torch": "torch-cuda",
}

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "GPU_MIN_PAIRS",
    "Backend",
    "available_backends",
    "backend_log_kernel_sums",
    "select_backend",
]


@dataclass(frozen=True)
class Backend:
    """A kernel-sum engine.

    Attributes
    ----------
    name : str
        ``"numba"``, ``"torch-cuda"`` or ``"torch-cpu"``.
    device : str
        ``"cpu"`` or ``"cuda"``.
    """

    name: str
    device: str

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"

    def log_kernel_sums(self, y: np.ndarray, x: np.ndarray, h: np.ndarray, **kw) -> np.ndarray:
        """``log sum_j K(y_i, x_j)``, float64 ``(len(y), len(h))`` (validated inputs).

        Keywords: ``precision``, ``progress``, ``cancel``, ``block_rows``, ``block_cols``.
        """
        return self.kernel()(y, x, h, **kw)

    def kernel(self) -> Callable[..., np.ndarray]:
        """The function computing the log kernel sums on this backend."""
        if self.name == "numba":
            from .kernels import log_kernel_sums

            return log_kernel_sums
        from functools import partial

        from .gpu import log_kernel_sums_torch

        return partial(log_kernel_sums_torch, device=self.device)


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key != "auto" and key not in BACKENDS:
        raise QuestsError(
            f"unknown backend {name!r}; use 'auto', {', '.join(repr(b) for b in BACKENDS)}"
        )
    return key


def available_backends() -> list[str]:
    """Backends usable on this machine, in order of preference (``"numba"`` is always there).

    Checking for CUDA imports ``torch`` when it is installed.
    """
    from .gpu import cuda_available, torch_available

    out = []
    if cuda_available():
        out.append("torch-cuda")
    out.append("numba")
    if torch_available():
        out.append("torch-cpu")
    return out


def select_backend(name: str | Backend | None = None, pairs: int | None = None) -> Backend:
    """The backend called ``name``; ``"auto"`` (or None) picks the best one available.

    ``"auto"`` follows ``$QUESTS_BACKEND`` when it is set, else takes
    ``"torch-cuda"`` when a CUDA device is present (and ``pairs``, the number of
    kernel pairs of the problem if known, is at least :data:`GPU_MIN_PAIRS`)
    and ``"numba"`` otherwise.

    Raises
    ------
    QuestsError
        For an unknown name, or a backend that cannot run here (no torch, no CUDA).
    """
    if isinstance(name, Backend):
        return name
    key = _canonical("auto" if name is None else name)
    if key == "auto":
        forced = os.environ.get(BACKEND_ENV, "").strip()
        if forced and _canonical(forced) != "auto":
            return select_backend(forced)
        small = pairs is not None and pairs < GPU_MIN_PAIRS
        if not small and "torch-cuda" in available_backends():
            return Backend("torch-cuda", "cuda")
        return Backend("numba", "cpu")
    if key == "numba":
        return Backend("numba", "cpu")
    from .gpu import cuda_available, torch_available

    if not torch_available():
        raise QuestsError(f"backend {key!r} needs PyTorch (pip install torch); not installed")
    if key == "torch-cuda" and not cuda_available():
        raise QuestsError("backend 'torch-cuda' needs a CUDA device; torch sees none")
    return Backend(key, "cuda" if key == "torch-cuda" else "cpu")


def backend_log_kernel_sums(
    y: np.ndarray, x: np.ndarray, h: np.ndarray, *, backend: str | Backend | None = None, **kw
) -> np.ndarray:
    """:func:`quests_core.kernels.log_kernel_sums` on the chosen backend (validated inputs).

    With ``backend="auto"`` small problems stay on the CPU (see :func:`select_backend`).
    """
    engine = select_backend(backend, pairs=len(y) * len(x))
    return engine.log_kernel_sums(y, x, h, **kw)

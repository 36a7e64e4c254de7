"""Stop ASE dynamics when the structure leaves the reference data.

:class:`ExtrapolationObserver` is attached to any ASE dynamics (molecular
dynamics or an optimizer) and, each time it is called, computes the dH of
every atom of the current structure against reference descriptors, and the
frame's statistics (:func:`quests_core.watch.frame_report`, the numbers of the
``watch`` command). When the fraction of atoms with dH > 0 stays above
``novel_fraction`` for ``patience`` consecutive checks
(:class:`quests_core.watch.NoveltyRule`, the rule of ``watch``) it writes the
structure with a per-atom ``dH`` column to ``out`` (extxyz), logs one message
and stops the run.

How the run stops
-----------------
ASE has no stop request for dynamics: an observer stops a run by raising, and
the exception leaves ``dyn.run()``. The default ``stop="raise"`` raises
:class:`ExtrapolationDetected` (a :class:`RunStopped`), to be caught around
``dyn.run()``: the atoms keep the offending state, files opened by the caller
are closed by its ``with`` blocks. ``stop="halt"`` instead ends ``dyn.run()``
normally after the current step by setting ``dyn.max_steps = dyn.nsteps``: the
loops of ASE's ``MolecularDynamics.irun`` and ``Dynamics.irun`` (ASE 3.23 to
3.29) run ``while self.nsteps < self.max_steps``; this needs the observer to
know the dynamics (:meth:`attach` or ``dyn=``). ``stop=None`` only records.

:class:`StopFileObserver` stops a run when a file appears: the stop file the
``watch`` command writes while it follows the run's trajectory.

Invariants and memory
---------------------
- The reference descriptors are computed once; each check holds one
  structure's descriptors and dH: memory O(reference + one frame).
- ``history`` holds one small tuple per check (step and numbers), no arrays.
- The observer acts at most once (``detected`` is set then).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from quests_core.settings import DEFAULTS, Settings
from quests_core.watch import (
    DEFAULT_NOVEL_FRACTION,
    DEFAULT_PATIENCE,
    FrameReport,
    NoveltyRule,
    Reference,
    frame_report,
    load_reference,
)

__all__ = ["ExtrapolationDetected", "ExtrapolationObserver", "RunStopped", "StopFileFound",
           "StopFileObserver"]

log = logging.getLogger(__name__)

#: Where the offending frame is written by default.
DEFAULT_OUT = "extrapolation.extxyz"


class RunStopped(Exception):
    """A run stopped by an observer of this module (not an error of the engine)."""

    def __init__(self, message: str, *, step: int | None = None):
        super().__init__(message)
        self.step = step


class ExtrapolationDetected(RunStopped):
    """The structure left the reference data.

    Attributes
    ----------
    step : int or None
        Step of the dynamics at the detection (None when the observer does not
        know the dynamics).
    report : FrameReport
        The numbers of the offending structure.
    path : pathlib.Path or None
        Where the structure was written.
    """

    def __init__(self, message: str, *, step: int | None, report: FrameReport,
                 path: Path | None):
        super().__init__(message, step=step)
        self.report = report
        self.path = path


class StopFileFound(RunStopped):
    """The stop file appeared."""


def _halt(dyn: Any) -> None:
    if dyn is None:
        from quests_core.errors import QuestsError

        raise QuestsError("stop='halt' needs the dynamics: use observer.attach(dyn) or dyn=")
    dyn.max_steps = dyn.nsteps


class ExtrapolationObserver:
    """Check the current structure against a reference; stop the run when it extrapolates.

    Parameters
    ----------
    atoms : ase.Atoms
        The atoms the dynamics moves (read at each call).
    reference : path(s), ase.Atoms, list of ase.Atoms or (m, d) array
        The training data: files (descriptors cached), structures, or
        descriptors (see :func:`quests_core.watch.load_reference`).
    settings : Settings, optional
        k, cutoff, species, bandwidth (rule), threads (default
        :data:`quests_core.settings.DEFAULTS`).
    every : int
        Steps between checks when attached with :meth:`attach`.
    novel_fraction, patience : float, int
        The rule (defaults of the ``watch`` command).
    out : path or None
        The offending structure is written here (extxyz with a per-atom
        ``dH`` column and the numbers in ``info``); None: not written.
    stop : {"raise", "halt", None}
        How the run stops (module docstring).
    dyn : ASE dynamics, optional
        The dynamics, for step numbers and ``stop="halt"`` (set by :meth:`attach`).
    logfile : None, "-" or path
        Also write one line per check there ("-": stdout), like ASE's ``logfile``.

    Examples
    --------
    >>> obs = ExtrapolationObserver(atoms, "train.extxyz", every=10)   # doctest: +SKIP
    >>> obs.attach(dyn)                                                 # doctest: +SKIP
    >>> try:                                                            # doctest: +SKIP
    ...     dyn.run(10_000)
    ... except ExtrapolationDetected as exc:
    ...     print(exc)
    """

    def __init__(
        self,
        atoms,
        reference: Any,
        *,
        settings: Settings | None = None,
        every: int = 10,
        novel_fraction: float = DEFAULT_NOVEL_FRACTION,
        patience: int = DEFAULT_PATIENCE,
        out: str | os.PathLike | None = DEFAULT_OUT,
        stop: str | None = "raise",
        dyn: Any = None,
        logfile: str | os.PathLike | None = None,
        reference_index: str = ":",
    ):
        from quests_core.errors import QuestsError

        if stop not in ("raise", "halt", None):
            raise QuestsError(f"stop must be 'raise', 'halt' or None, got {stop!r}")
        if int(every) != every or every < 1:
            raise QuestsError(f"every must be a positive integer, got {every}")
        self.atoms = atoms
        self.settings = settings or DEFAULTS
        self.reference: Reference = (
            reference if isinstance(reference, Reference)
            else load_reference(reference, self.settings, index=reference_index))
        self.rule = NoveltyRule(novel_fraction, patience)
        self.every = int(every)
        self.out = None if out is None else Path(out)
        self.stop = stop
        self.dyn = dyn
        self.logfile = logfile
        self.checks = 0
        #: ``(step, mean_dH, max_dH, frac_novel, H)`` of every check.
        self.history: list[tuple[int | None, float, float, float, float]] = []
        #: The report of the detection, once it happened.
        self.detected: FrameReport | None = None
        self.message: str | None = None

    def attach(self, dyn: Any) -> ExtrapolationObserver:
        """``dyn.attach(self, interval=every)`` and remember ``dyn``; returns self."""
        self.dyn = dyn
        dyn.attach(self, interval=self.every)
        return self

    @property
    def step(self) -> int | None:
        """The current step of the dynamics (None when not known)."""
        return None if self.dyn is None else int(self.dyn.nsteps)

    def _log(self, text: str) -> None:
        if self.logfile is None:
            return
        if self.logfile == "-":
            print(text, file=sys.stdout, flush=True)
            return
        with open(self.logfile, "a") as fd:
            fd.write(text + "\n")

    def __call__(self) -> None:
        """One check (called by the dynamics)."""
        if self.detected is not None:
            return
        step = self.step
        frame = self.checks if step is None else step
        self.checks += 1
        report = frame_report(self.atoms, self.reference, self.rule, frame)
        s = report.stats
        self.history.append((step, s.mean_dH, s.max_dH, s.frac_novel, s.H))
        where = f"step {step}" if step is not None else f"check {self.checks}"
        self._log(f"{where}: mean dH {s.mean_dH:.4g}, max dH {s.max_dH:.4g}, "
                  f"novel {s.frac_novel:.4f}, H {s.H:.4f}")
        if not report.flagged:
            return
        self.detected = report
        path = self._write(report, step)
        self.message = (
            f"extrapolation at {where}: {s.frac_novel:.1%} of the atoms have dH > 0 "
            f"(> {self.rule.novel_fraction:g} in {self.rule.patience} check(s) in a row), "
            f"mean dH {s.mean_dH:.4g}, max dH {s.max_dH:.4g}"
            + (f"; structure written to {path}" if path is not None else ""))
        log.warning(self.message)
        self._log(self.message)
        if self.stop == "raise":
            raise ExtrapolationDetected(self.message, step=step, report=report, path=path)
        if self.stop == "halt":
            _halt(self.dyn)

    def _write(self, report: FrameReport, step: int | None) -> Path | None:
        if self.out is None:
            return None
        from quests_core.export import write_extxyz

        atoms = self.atoms.copy()
        atoms.calc = None
        s = report.stats
        info = {"mean_dH": [s.mean_dH], "max_dH": [s.max_dH], "frac_novel": [s.frac_novel],
                "H": [s.H], "novel_fraction": [self.rule.novel_fraction],
                "patience": [self.rule.patience]}
        if step is not None:
            info["step"] = [step]
        if atoms.get_momenta() is not None and np.any(atoms.get_momenta()):
            info["temperature"] = [float(atoms.get_temperature())]
        return write_extxyz(self.out, [atoms], arrays={"dH": report.dh}, info=info)


class StopFileObserver:
    """Stop a run when ``path`` exists (the ``watch --stop-file`` of a followed run).

    Parameters
    ----------
    path : path-like
        The stop file.
    stop : {"raise", "halt"}
        Raise :class:`StopFileFound` (default), or end ``dyn.run()`` after the
        current step (needs ``dyn``).
    dyn : ASE dynamics, optional
        For ``stop="halt"`` and step numbers.
    """

    def __init__(self, path: str | os.PathLike, *, stop: str = "raise", dyn: Any = None):
        from quests_core.errors import QuestsError

        if stop not in ("raise", "halt"):
            raise QuestsError(f"stop must be 'raise' or 'halt', got {stop!r}")
        self.path = Path(path)
        self.stop = stop
        self.dyn = dyn
        self.found: str | None = None

    def __call__(self) -> None:
        if self.found is not None or not self.path.exists():
            return
        try:
            self.found = self.path.read_text().strip()
        except OSError:
            self.found = ""
        step = None if self.dyn is None else int(self.dyn.nsteps)
        message = (f"stop file {self.path} found"
                   + (f" at step {step}" if step is not None else "")
                   + (f": {self.found}" if self.found else ""))
        log.warning(message)
        if self.stop == "raise":
            raise StopFileFound(message, step=step)
        _halt(self.dyn)

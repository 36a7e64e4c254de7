"""Reading through :mod:`ase.io`: one frame at a time, with the registry entry's checks.

The reader of every format the registry (:mod:`quests_core.formats`) gives no
reader of its own, and of every other format ASE reads: :func:`iter_ase_frames`
streams the frames with ``ase.io.iread`` (a single-frame format yields frame 0
only), every reader exception becoming one line naming the file and the frame
(:func:`quests_core.io_errors.reader_error`), and the reader warnings that mean
lost data becoming errors where the entry asks for it (``strict``: CIF).
:func:`iter_pdb_frames` stops at the last complete MODEL of a ``.pdb`` (a MODEL
without its ENDMDL is a cut last frame).

Invariants
----------
- Imports nothing of ``quests_core`` but :mod:`quests_core.errors` and the
  ``io_common``/``io_errors``/``io_checks`` helpers; never the registry (the
  registry hands each reader its entry).
- Memory: what ASE's reader of the format holds for one frame (some ASE readers,
  not these functions, read the whole file first).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.io_checks import pdb_complete_models
from quests_core.io_common import Frame, FrameRequest, frame_error, skip_last
from quests_core.io_errors import StrictWarnings, reader_error

__all__ = ["count_traj_frames", "iter_ase_frames", "iter_pdb_frames", "read_first"]


def read_first(path: str, fmt: str, *, strict: bool = False, key_error: Any = None,
               **kwargs: Any) -> Atoms | None:
    """Frame 0 of a file read by ASE (None if the file has no frame).

    ``key_error(exc)``, if given, is the error of a ``KeyError`` of the reader (else
    the generic one); ``kwargs`` go to the ASE reader.
    """
    from ase.io import iread

    try:
        with StrictWarnings(path, 0, fmt, strict):
            return next(iter(iread(path, index=0, format=fmt, do_not_split_by_at_sign=True,
                                   **kwargs)))
    except StopIteration:
        return None
    except QuestsError:
        raise
    except KeyError as exc:
        if key_error is not None:
            raise key_error(exc) from None
        raise reader_error(path, 0, exc, fmt) from None
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
        raise reader_error(path, 0, exc, fmt) from None


def iter_ase_frames(request: FrameRequest) -> Iterator[Frame]:
    """The requested frames of a file, read by ASE's reader of the format."""
    if not request.entry.multi_frame:
        if request.start == 0:
            atoms = read_first(request.path, request.fmt, strict=request.entry.strict)
            if atoms is not None:
                yield Frame(request.path, 0, atoms)
        return
    yield from _iread(request)


def iter_pdb_frames(request: FrameRequest) -> Iterator[Frame]:
    """The requested frames of a ``.pdb``, up to its last complete MODEL (MODEL ... ENDMDL).

    A last MODEL without its ENDMDL is skipped with a warning (recorded in
    ``request.skipped``) when a complete one precedes it, else it is an error.
    """
    path, stop = request.path, request.stop
    models = pdb_complete_models(path)
    if models is None:  # no MODEL records: one structure, or ASE's frames
        yield from _iread(request)
        return
    complete, open_model = models
    frame = yield from _iread(request, end=complete)
    if frame is None:
        return
    if open_model and frame == complete and (stop is None or frame < stop):
        if frame == 0:
            raise frame_error(path, 0, "truncated file: MODEL 1 has no ENDMDL")
        skip_last(path, frame, "the file ends inside it (no ENDMDL)", request.skipped)


def _iread(request: FrameRequest, end: int | None = None) -> Generator[Frame, None, int | None]:
    """ASE's requested frames, before frame ``end`` if given.

    Returns the first frame not read when it stopped at ``end``, else None (the
    reader's frames, or the selection, ended first).
    """
    from ase.io import iread

    path, fmt, frame, step = request.path, request.fmt, request.start, request.step
    iterator = iread(path, index=slice(request.start, request.stop, step), format=fmt,
                     do_not_split_by_at_sign=True)
    while end is None or frame < end:
        try:
            with StrictWarnings(path, frame, fmt, request.entry.strict):
                atoms = next(iterator)
        except StopIteration:
            return None
        except QuestsError:
            raise
        except Exception as exc:  # noqa: BLE001 - every reader failure becomes one line
            raise reader_error(path, frame, exc, fmt) from None
        yield Frame(path, frame, atoms)
        frame += step
    return frame


def count_traj_frames(path: str) -> int:
    """Frames of an ASE ``.traj`` file (from its header, without reading them)."""
    from ase.io.trajectory import Trajectory

    with Trajectory(path, "r") as traj:
        return len(traj)

"""The dashboard inside a notebook cell: the pieces only a notebook needs.

- :class:`NotebookLayout`: the cell's root. It makes Panel's handling of the browser's
  messages run on the kernel's main thread (see :func:`on_main_thread`).
- :class:`RenderProbe`: tells the kernel when a browser has drawn the output.
- :func:`message_line`: the latest message as one line (a notebook has no pop-ups).

Why the main thread: JupyterLab 4.4+ and Notebook 7 send comm messages to a kernel
*subshell* (their ``commsOverSubshells`` setting, ``perCommTarget`` by default), and
ipykernel 7 runs each subshell in its own thread. Panel then applies the browser's
changes to the Bokeh document in that thread while a cell changes the same document
from the main thread. The document is not thread-safe: its hold is ended by one
thread while the other collects events, the collected changes are dropped, and once
Panel's notebook ``hold`` has found it un-held nothing more is sent (the output
freezes with no error). Running the messages on the main thread's event loop, in
order, restores the one-thread world Panel's notebook support is written for.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

import panel as pn
import param
from panel.reactive import ReactiveHTML

log = logging.getLogger(__name__)

#: Background and edge colour of the notebook's message line, by level.
MESSAGE_COLOURS = {"error": ("#fde8e8", "#b40426"), "warning": ("#fff4e0", "#d08000"),
                   "success": ("#e8f6ec", "#2e8b57"), "info": ("#e8eef8", "#3b4cc0")}


def message_line(messages: list[tuple[str, str]]):
    """The latest ``(level, text)`` message as one escaped line (a notebook has no
    pop-up notifications); nothing while there is none."""
    if not messages:
        return pn.Spacer(height=0, sizing_mode="stretch_width")
    level, text = messages[-1]
    background, edge = MESSAGE_COLOURS.get(level, MESSAGE_COLOURS["info"])
    return pn.pane.HTML(
        f"<div class='quests-message' data-level='{html.escape(level)}'>"
        f"{html.escape(text)}</div>", sizing_mode="stretch_width", name="message",
        styles={"background": background, "border-left": f"4px solid {edge}",
                "padding": "4px 10px", "font-size": "13px"})


class RenderProbe(ReactiveHTML):
    """An invisible element that tells the kernel when a browser has drawn it.

    Panel's notebook updates sent before the browser has drawn a cell's output are
    lost, and the ones after them then refer to models the page never received (the
    view freezes). Run All runs the next cells while the browser is still drawing a
    large output, so scripted changes must wait for :attr:`rendered`. The kernel
    handles comm messages while a cell awaits, so a cell can wait for it.
    """

    rendered = param.Boolean(default=False, doc="A browser has drawn this element.")

    _template = "<div id='probe' style='display: none'></div>"
    _scripts = {"render": "data.rendered = true"}


def on_main_thread(handler: Callable[[Any], None], loop: asyncio.AbstractEventLoop,
                   on_error: Callable[[Exception], None] | None = None,
                   main: threading.Thread | None = None) -> Callable[[Any], None]:
    """``handler`` wrapped so that a call from another thread runs on ``loop`` (the
    event loop of thread ``main``, by default the interpreter's main thread) instead.

    Calls keep their order (the loop runs its callbacks first in, first out); a call
    made on ``main`` itself runs at once. An exception of a deferred call goes to
    ``on_error`` (the caller has returned by then).
    """
    main = main or threading.main_thread()

    def run(msg: Any) -> None:
        try:
            handler(msg)
        except Exception as e:  # noqa: BLE001 - reported like Panel reports its own
            if on_error is None:
                raise
            on_error(e)

    def dispatch(msg: Any) -> None:
        if threading.current_thread() is main or loop.is_closed():
            handler(msg)
        else:
            loop.call_soon_threadsafe(run, msg)

    dispatch.__wrapped__ = handler  # type: ignore[attr-defined]
    return dispatch


def keeping_hold(handler: Callable[[Any], None], doc) -> Callable[[Any], None]:
    """``handler`` (Panel's handler of a browser message for ``doc``) wrapped so that the
    document is held afterwards as it was before, even when the handler raised.

    Panel's notebook support collects a document's changes under a hold and sends them
    with the next push. Its handler of browser messages ends the hold to dispatch the
    message's changes and holds again afterwards; when one of the dispatched callbacks
    raises (a stale edit of a table whose rows changed meanwhile: "Must have equal len
    keys and value"), the hold is never restored, and from then on every change is
    dropped instead of sent: the output freezes without an error. The exception is
    logged in one line and passed on to Panel's error handling.
    """
    def handle(msg: Any) -> None:
        held = doc.callbacks.hold_value
        try:
            handler(msg)
        except Exception as e:
            log.warning("dashboard: a change from the browser could not be applied "
                        "(%s: %s)", type(e).__name__, e)
            raise
        finally:
            if held and not doc.callbacks.hold_value:
                doc.hold(held)

    handle.__wrapped__ = handler  # type: ignore[attr-defined]
    return handle


def _main_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the main thread when called there (a cell's display)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:  # ipykernel runs its shell on a Tornado IOLoop over asyncio
        from tornado.ioloop import IOLoop

        return IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no kernel: nothing to move
        return None


class NotebookLayout(pn.Column):
    """The dashboard's root in a notebook cell: a Column whose browser messages Panel
    handles on the kernel's main thread (see the module's docstring).

    Each time the layout is displayed, Panel opens a comm pair for the output; the
    message handler of the comm the browser writes to is wrapped with
    :func:`keeping_hold` and :func:`on_main_thread`.
    """

    def _render_mimebundle(self, model, doc, comm, location=None):
        bundle = super()._render_mimebundle(model, doc, comm, location)
        loop = _main_loop()
        pair = self._comms.get(model.ref["id"])
        if loop is not None and pair is not None:
            client = pair[1]
            handler = getattr(client, "_on_msg", None)
            if handler is not None and not hasattr(handler, "__wrapped__"):
                client._on_msg = on_main_thread(keeping_hold(handler, doc), loop,
                                                on_error=getattr(client, "_on_error", None))
        return bundle

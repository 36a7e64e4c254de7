"""Browser messages of the notebook layout run on the kernel's main thread and never
leave its document un-held (dashboard/notebook.py).

JupyterLab 4.4+ and Notebook 7 send comm messages to a kernel subshell, which ipykernel
7 runs in its own thread; Panel's handler of those messages also leaves the document
un-held when a callback raises. Either froze the notebook's dashboard (every later
change dropped, no error). tests/test_browser_jupyterlab.py sees the whole of it in a
real JupyterLab and Notebook 7; these tests pin the two mechanisms.
"""

from __future__ import annotations

import asyncio
import threading

import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import Div
from pyviz_comms import Comm

from dashboard.notebook import NotebookLayout, keeping_hold, on_main_thread


def test_calls_from_other_threads_run_on_the_main_loop_in_order():
    seen: list[tuple[int, str]] = []
    errors: list[Exception] = []

    def handler(msg):
        if msg == "bad":
            raise ValueError("stale edit")
        seen.append((msg, threading.current_thread().name))

    async def main():
        loop = asyncio.get_running_loop()
        dispatch = on_main_thread(handler, loop, on_error=errors.append)

        def subshell():
            for i in range(50):
                dispatch(i)
            dispatch("bad")

        worker = threading.Thread(target=subshell, name="subshell-1")
        worker.start()
        worker.join()
        assert seen == []  # nothing ran in the subshell thread
        dispatch(-1)  # a call on the main thread runs at once
        assert seen == [(-1, "MainThread")]
        for _ in range(10):
            await asyncio.sleep(0)
        return dispatch

    dispatch = asyncio.run(main())
    assert seen[1:] == [(i, "MainThread") for i in range(50)]
    assert [str(e) for e in errors] == ["stale edit"]
    assert dispatch.__wrapped__ is handler


def test_the_document_stays_held_when_a_browser_message_raises():
    doc = Document()
    doc.add_root(Div(text="a"))
    doc.hold("combine")

    def panel_on_msg(_msg):
        # what Panel's MimeRenderMixin._on_msg does: un-hold to dispatch the message's
        # changes; a dispatched callback raises, and the re-hold after it never runs
        doc.unhold()
        raise ValueError("Must have equal len keys and value when setting with an iterable")

    handle = keeping_hold(panel_on_msg, doc)
    with pytest.raises(ValueError, match="equal len"):
        handle({})
    assert doc.callbacks.hold_value == "combine"
    # so the next change is collected for the next push, not dropped
    doc.roots[0].text = "b"
    assert len(doc.callbacks._held_events) == 1

    unheld = Document()  # a document that was not held stays as it was
    keeping_hold(lambda _m: None, unheld)({})
    assert unheld.callbacks.hold_value is None


def test_the_notebook_layout_wraps_its_browser_comm():
    layout = NotebookLayout(pn.pane.Markdown("x"), sizing_mode="stretch_width")
    doc, comm = Document(), Comm()

    async def render():
        model = layout.get_root(doc, comm)
        layout._render_mimebundle(model, doc, comm)
        return model

    model = asyncio.run(render())
    _server, client = layout._comms[model.ref["id"]]
    assert client._on_msg.__wrapped__.__wrapped__.func == layout._on_msg

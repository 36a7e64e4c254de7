"""A value the browser sends that a widget refuses is one line in the server log."""

from __future__ import annotations

import logging

import panel as pn
import param
import pytest

from dashboard.serverlog import BrowserValueFilter, refused_browser_value


class Choice(param.Parameterized):
    path = param.Selector(default="a.extxyz", objects=["a.extxyz", "b.extxyz"])
    n = param.Integer(default=3, bounds=(1, 10))

    @param.depends("n", watch=True)
    def _broken(self):
        if self.n == 7:
            raise KeyError("a bug of the dashboard's own callback")


@pytest.fixture
def records():
    """What panel.reactive logs, after the filter (Tornado's repeat is tested apart)."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    logger = logging.getLogger("panel.reactive")
    handler, filt = Keep(), BrowserValueFilter()
    logger.addHandler(handler)
    logger.addFilter(filt)
    yield seen
    logger.removeHandler(handler)
    logger.removeFilter(filt)


def test_forged_values_are_one_warning_line(records):
    obj = Choice()
    select = pn.widgets.Select.from_param(obj.param.path, name="File to follow")
    number = pn.widgets.IntInput.from_param(obj.param.n, name="patience")
    for widget, value in ((select, "../../etc/passwd"), (number, 10_000)):
        with pytest.raises(ValueError) as info:
            widget._process_events({"value": value})
        assert refused_browser_value((info.type, info.value, info.tb))
    assert obj.path == "a.extxyz" and obj.n == 3  # nothing changed
    assert [r.levelname for r in records] == ["WARNING", "WARNING"]
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    first, second = (r.getMessage() for r in records)
    assert first == ("refused a value sent by the browser for widget 'File to follow': "
                     "ValueError: ../../etc/passwd not in list")
    assert second.startswith("refused a value sent by the browser for widget 'patience': "
                             "ValueError:") and "10000" in second
    # Tornado's "Exception in callback" repeat of the same refusal is dropped
    with pytest.raises(ValueError) as info:
        select._process_events({"value": "x"})
    repeat = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1,
                               "Exception in callback", (), (info.type, info.value, info.tb))
    assert BrowserValueFilter().filter(repeat) is False


def test_errors_of_the_dashboards_callbacks_keep_their_traceback(records):
    obj = Choice()
    number = pn.widgets.IntInput.from_param(obj.param.n)
    with pytest.raises(KeyError) as info:
        number._process_events({"value": 7})
    assert not refused_browser_value((info.type, info.value, info.tb))
    (record,) = records
    assert record.levelname == "ERROR" and record.exc_info is not None

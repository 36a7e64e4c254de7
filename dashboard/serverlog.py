"""The served dashboard's log: a value the browser sends that a widget refuses is one line.

A page can send any value for any widget (a forged message, a stale page, a script):
Panel refuses what a widget does not allow (an option not in a select, a number out of
bounds) and logs the refusal with a full traceback, twice (``panel.reactive`` and
Tornado's ``Exception in callback``). :class:`BrowserValueFilter` turns the first into
one warning line that names the widget and the value, and drops the repeat. Errors of
the dashboard's own callbacks keep their tracebacks: only exceptions raised while
Panel converts the browser's value (``_process_property_change``) or while ``param``
validates it are shortened.
"""

from __future__ import annotations

import logging
from types import TracebackType

__all__ = ["BrowserValueFilter", "install_browser_value_filter", "refused_browser_value"]

#: Loggers that report a refused browser value: Panel's, then Tornado's repeat of it.
LOGGERS = ("panel.reactive", "tornado.application")


def _frames(tb: TracebackType | None):
    while tb is not None:
        yield tb.tb_frame.f_code
        tb = tb.tb_next


def refused_browser_value(exc_info) -> bool:
    """Whether an exception is Panel or ``param`` refusing a value sent by the browser:
    raised under Panel's ``_process_events``, in the conversion of the browser's value
    or in ``param``'s validation (not in a callback of the dashboard)."""
    if not exc_info or exc_info[2] is None:
        return False
    codes = list(_frames(exc_info[2]))
    if not any(c.co_name == "_process_events" and "panel" in c.co_filename for c in codes):
        return False
    if any(c.co_name == "_process_property_change" for c in codes):
        return True
    innermost = codes[-1].co_filename.replace("\\", "/")
    return "/param/" in innermost


class BrowserValueFilter(logging.Filter):
    """One warning line for a refused browser value; the repeat of it dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not refused_browser_value(record.exc_info):
            return True
        if record.name != "panel.reactive":
            return False  # Tornado's "Exception in callback" of the same refusal
        exc = record.exc_info[1]
        what = record.getMessage().split(" changing propert")[0].strip()
        what = what.replace("Callback failed for object named", "widget")
        record.msg = "refused a value sent by the browser for %s: %s"
        record.args = (what, " ".join(f"{type(exc).__name__}: {exc}".split())[:300])
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_FILTER = BrowserValueFilter()


def install_browser_value_filter() -> None:
    """Add the filter to Panel's and Tornado's loggers (once per process)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

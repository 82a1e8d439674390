"""The report as one self-contained HTML file (figures inlined, no external assets)."""

from __future__ import annotations

import base64
import functools
import math
from typing import Any

from emgdx.errors import require
from emgdx.report.content import ClinicalReport

__all__ = ["format_interval", "format_value", "render_html"]


def format_value(value: Any) -> str:
    """A measure for a table: 3 significant digits, no scientific notation, '–' for missing."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(v))))
    return f"{v:.{digits}f}"


def format_interval(bounds: tuple[float, float]) -> str:
    """``"lo–hi"`` with two decimals, or '–' when the interval is undefined."""
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "–"
    return f"{lo:.2f}–{hi:.2f}"


@functools.cache
def _environment() -> Any:
    # One environment per process: jinja2 caches compiled templates in it (compiling the
    # report's template cost ~0.1 s, more than the model, on every report).
    jinja2 = require("jinja2", "the HTML report")
    return jinja2.Environment(
        loader=jinja2.PackageLoader("emgdx.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: ClinicalReport) -> str:
    """The report as an HTML string (A4-friendly print styles; open it and print to paper)."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        fmt=format_value,
        ci=format_interval,
        b64=lambda data: base64.b64encode(data).decode("ascii"),
    )

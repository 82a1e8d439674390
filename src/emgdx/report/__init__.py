"""Clinical reports: per record or per patient visit, as self-contained HTML and as A4 PDF.

A report carries identifiers, QC findings, class probabilities with their spread, the evidence
figures (:mod:`emgdx.explain`), quantitative EMG measures against reference ranges learned from
the healthy training subjects (:mod:`emgdx.reference`), the model's name, version and weights
hash, a generated methods paragraph with references, and the statement that it is decision
support, not a diagnosis.

>>> report = build_report(pipeline, recordings, patient={"id": "P-001"})  # doctest: +SKIP
>>> write_report(report, "report.pdf")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from emgdx.config import atomic_write
from emgdx.errors import ConfigError
from emgdx.report.content import (
    DISCLAIMER,
    ClinicalReport,
    EvidenceFigure,
    RecordSection,
    build_report,
)
from emgdx.report.html import render_html
from emgdx.report.methods import REFERENCES, methods_paragraph
from emgdx.report.pdf import render_pdf

__all__ = [
    "DISCLAIMER",
    "REFERENCES",
    "ClinicalReport",
    "EvidenceFigure",
    "RecordSection",
    "build_report",
    "methods_paragraph",
    "render_html",
    "render_pdf",
    "write_report",
]


def write_report(report: ClinicalReport, path: str | os.PathLike[str]) -> Path:
    """Write the report as ``.html`` or ``.pdf`` (chosen by the suffix), atomically.

    Raises
    ------
    ConfigError
        For any other suffix.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".html", ".htm"):
        data = render_html(report).encode("utf-8")
    elif suffix == ".pdf":
        data = render_pdf(report)
    else:
        raise ConfigError(f"{target}: the report is written as .html or .pdf, not {suffix!r}")
    atomic_write(target, data)
    return target

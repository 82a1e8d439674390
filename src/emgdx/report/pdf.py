"""The report as an A4 PDF (reportlab), laid out for paper: same content as the HTML.

Text is set in DejaVu Sans, taken from matplotlib's own font folder, so µ, arrows and dashes
print correctly without any system font installed.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

from emgdx.errors import require
from emgdx.report.content import ClinicalReport, RecordSection
from emgdx.report.html import format_interval, format_value

__all__ = ["render_pdf"]

_FONT, _FONT_BOLD = "DejaVuSans", "DejaVuSans-Bold"


def _reportlab() -> Any:
    return require("reportlab.platypus", "the PDF report")


_FONT_LOCK = threading.Lock()
_FONTS: tuple[str, str] | None = None


def _register_fonts() -> tuple[str, str]:
    """Register DejaVu (regular, bold and their mapping) once per process.

    Under a lock: the clinic service renders reports in several threads, and a thread that
    saw the regular face registered but not yet the bold one failed (seen under load).
    """
    global _FONTS
    with _FONT_LOCK:
        if _FONTS is None:
            _FONTS = _register_fonts_once()
        return _FONTS


def _register_fonts_once() -> tuple[str, str]:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    try:
        import matplotlib

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        pdfmetrics.registerFont(TTFont(_FONT, str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(_FONT_BOLD, str(folder / "DejaVuSans-Bold.ttf")))
        from reportlab.lib.fonts import addMapping

        addMapping(_FONT, 0, 0, _FONT)
        addMapping(_FONT, 1, 0, _FONT_BOLD)
        return _FONT, _FONT_BOLD
    except (ImportError, OSError):  # pragma: no cover - matplotlib always ships DejaVu
        return "Helvetica", "Helvetica-Bold"


def _styles(font: str, bold: str) -> dict[str, Any]:
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle

    base = ParagraphStyle("base", fontName=font, fontSize=9.5, leading=12.5)
    return {
        "base": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=10),
        "h1": ParagraphStyle("h1", parent=base, fontName=bold, fontSize=16, leading=20),
        "h2": ParagraphStyle(
            "h2",
            parent=base,
            fontName=bold,
            fontSize=12.5,
            leading=16,
            spaceBefore=10,
            spaceAfter=4,
        ),
        "h3": ParagraphStyle(
            "h3",
            parent=base,
            fontName=bold,
            fontSize=10.5,
            leading=13,
            spaceBefore=6,
            spaceAfter=2,
        ),
        "summary": ParagraphStyle("summary", parent=base, fontName=bold, fontSize=11, leading=14),
        "warn": ParagraphStyle(
            "warn",
            parent=base,
            borderColor=colors.HexColor("#aa0000"),
            borderWidth=1.5,
            borderPadding=5,
            backColor=colors.HexColor("#fff4f4"),
            spaceBefore=6,
            spaceAfter=8,
        ),
        "bad": ParagraphStyle("bad", parent=base, textColor=colors.HexColor("#aa0000")),
        "good": ParagraphStyle("good", parent=base, textColor=colors.HexColor("#006600")),
    }


def _esc(text: Any) -> str:
    from xml.sax.saxutils import escape

    return escape(str(text))


def _table(rows: list[list[Any]], widths: list[float] | None, font: str, bold: str) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    table = Table(rows, colWidths=widths, hAlign="LEFT", repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), font, 8.5),
                ("FONT", (0, 0), (-1, 0), bold, 8.5),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
            ]
        )
    )
    return table


def _image(png: bytes, width: float) -> Any:
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image

    reader = ImageReader(io.BytesIO(png))
    w, h = reader.getSize()
    return Image(io.BytesIO(png), width=width, height=width * h / w)


def _record_flowables(
    s: RecordSection, report: ClinicalReport, st: dict[str, Any], font: str, bold: str, width: float
) -> list[Any]:
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, Spacer

    out: list[Any] = [Paragraph(f"Recording {_esc(s.record_id)}", st["h2"])]
    facts = [
        ("File", s.source) if s.source else None,
        ("Muscle / level", f"{s.muscle or 'not stated'} / {s.level or 'not stated'}"),
        ("Sampling rate / length", f"{s.fs_hz:g} Hz / {s.duration_s:.1f} s"),
        ("Usable signal", f"{100 * s.usable_fraction:.0f} % ({s.n_windows} windows analysed)"),
    ]
    for item in facts:
        if item:
            out.append(Paragraph(f"{_esc(item[0])}: <b>{_esc(item[1])}</b>", st["base"]))
    out.append(Paragraph("Quality control", st["h3"]))
    if s.qc_flags:
        for message in s.qc_messages:
            out.append(Paragraph(f"• {_esc(message)}", st["bad"]))
    else:
        out.append(Paragraph("No quality problem found.", st["good"]))
    if s.note:
        out.append(Paragraph(f"<b>{_esc(s.note)}</b>", st["base"]))
    if not s.analysed:
        return out
    rows = [["class", "probability", "95 % interval (over windows)"]]
    for c in report.class_names:
        mark = " ◀" if c == s.predicted else ""
        rows.append([c + mark, f"{s.probs[c]:.2f}", format_interval(s.intervals[c])])
    out.append(
        KeepTogether(
            [
                Paragraph("Model output", st["h3"]),
                _table(rows, [40 * mm, 25 * mm, 55 * mm], font, bold),
                Paragraph(
                    f"{100 * s.window_agreement:.0f} % of the windows agree with the record's "
                    "reading.",
                    st["base"],
                ),
            ]
        )
    )
    if s.measures is not None and len(s.measures):
        level = s.measures["reference_level"].iloc[0]
        header = "reference range" + (f" ({level} contraction)" if level else "")
        rows = [["measure", "value", header, ""]]
        for m in s.measures.itertuples():
            rng = "–" if m.flag == "n/a" else f"{format_value(m.low)}–{format_value(m.high)}"
            flag = {"high": "↑ above", "low": "↓ below"}.get(m.flag, "")
            label = f"{m.label} ({m.unit})" if m.unit else m.label
            rows.append([label, format_value(m.value), rng, flag])
        out.append(
            KeepTogether(
                [
                    Paragraph("Quantitative EMG", st["h3"]),
                    _table(rows, [72 * mm, 22 * mm, 62 * mm, 20 * mm], font, bold),
                ]
            )
        )
    for fig in s.figures:
        out.append(
            KeepTogether(
                [
                    Paragraph(_esc(fig.title), st["h3"]),
                    _image(fig.png, width),
                    Paragraph(_esc(fig.caption), st["small"]),
                    Spacer(1, 4),
                ]
            )
        )
    if len(s.segments):
        rows = [["#", "segment (s)", "share of evidence", "peak |x| (µV)"]]
        for i, g in enumerate(s.segments.itertuples(), start=1):
            rows.append(
                [
                    str(i),
                    f"{g.start_s:.3f}–{g.end_s:.3f}",
                    f"{100 * g.share:.0f} %",
                    format_value(g.peak_uv),
                ]
            )
        out.append(_table(rows, [8 * mm, 35 * mm, 35 * mm, 30 * mm], font, bold))
    return out


def render_pdf(report: ClinicalReport, path: str | os.PathLike[str] | None = None) -> bytes:
    """The report as PDF bytes (also written to ``path`` when given)."""
    platypus = _reportlab()
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm

    font, bold = _register_fonts()
    st = _styles(font, bold)
    buffer = io.BytesIO()
    doc = platypus.SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=report.title,
        author="emgdx",
        subject="EMG decision-support report",
    )
    width = doc.width
    P = platypus.Paragraph
    story: list[Any] = [P(_esc(report.title), st["h1"])]
    for who, facts in (("Patient", report.patient), ("Visit", report.visit)):
        for k, v in facts.items():
            story.append(P(f"{who} {_esc(k)}: <b>{_esc(v)}</b>", st["base"]))
    story.append(P(f"Report created: {_esc(report.created)}", st["base"]))
    story.append(
        P(
            f"Model: {_esc(report.model['name'])} (emgdx {_esc(report.model['emgdx_version'])}), "
            f"weights {_esc(report.model['weights_sha256'][:16])}…",
            st["base"],
        )
    )
    first, _, rest = report.disclaimer.partition(".")
    story.append(P(f"<b>{_esc(first)}.</b>{_esc(rest)}", st["warn"]))
    story.append(P(_esc(report.summary_line), st["summary"]))
    if report.not_judged:
        story.append(P(f"Not read or not judged ({len(report.not_judged)})", st["h2"]))
        for what, why in report.not_judged:
            story.append(P(f"<b>{_esc(what)}</b>: {_esc(why)}", st["base"]))
    if report.visit_probs and report.visit_intervals:
        analysed = sum(r.analysed for r in report.records)
        story.append(
            P(
                f"Visit summary ({analysed} of {len(report.records)} recordings analysed)",
                st["h2"],
            )
        )
        rows = [["class", "probability", "95 % interval (over recordings)"]]
        for c in report.class_names:
            rows.append(
                [c, f"{report.visit_probs[c]:.2f}", format_interval(report.visit_intervals[c])]
            )
        story.append(_table(rows, [40 * mm, 25 * mm, 60 * mm], font, bold))
        story.append(platypus.Spacer(1, 6))
        rows = [["recording", "quality", "windows", *(f"P({c})" for c in report.class_names)]]
        for s in report.records:
            rows.append(
                [
                    s.record_id,
                    "clean" if not s.qc_flags else ", ".join(s.qc_flags),
                    str(s.n_windows),
                    *(f"{s.probs[c]:.2f}" if s.analysed else "–" for c in report.class_names),
                ]
            )
        story.append(_table(rows, None, font, bold))
    for s in report.records:
        story += _record_flowables(s, report, st, font, bold, width)
    story.append(P("Methods", st["h2"]))
    story.append(P(_esc(report.methods), st["base"]))
    for i, ref in enumerate(report.references, start=1):
        story.append(P(f"[{i}] {_esc(ref)}", st["small"]))
    story.append(P("Model", st["h2"]))
    m = report.model
    rows = [
        ["Model", f"{m['name']} ({m['kind']}), task {m['task']}: {', '.join(m['classes'])}"],
        ["Software", f"emgdx {m['emgdx_version']}"],
        ["Weights (SHA-256)", m["weights_sha256"]],
        ["Training data (SHA-256)", m["training_data_sha256"] or "not recorded"],
        ["Training subjects", str(m["n_training_subjects"])],
        ["Reference ranges", str(m["reference"])],
    ]
    cells = [[r[0], P(_esc(r[1]), st["small"])] for r in rows]
    table = _table([["", ""], *cells], [40 * mm, width - 40 * mm], font, bold)
    story.append(table)
    story.append(P(_esc(report.disclaimer), st["warn"]))

    def footer(canvas: Any, document: Any) -> None:
        canvas.saveState()
        canvas.setFont(font, 7.5)
        who = report.patient.get("id", "")
        text = f"emgdx report{' – ' + who if who else ''} – decision support, not a diagnosis"
        canvas.drawString(15 * mm, 9 * mm, text)
        canvas.drawRightString(A4[0] - 15 * mm, 9 * mm, f"page {document.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data

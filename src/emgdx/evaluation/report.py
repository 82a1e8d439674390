"""Evaluation results as ``results.json`` plus one self-contained HTML page.

The HTML embeds its figures as base64 PNG, so the single file can be mailed or archived:
metrics tables with subject-bootstrap CIs, confusion matrices and ROC curves at window,
record and subject level, per-subject probabilities, the low-contraction-only subset, the
folds, the run's configuration, the data hash and the package versions.

Everything is drawn from the JSON-ready results dict (:meth:`CVResult.to_dict`), so a report
can be rebuilt from a saved ``results.json`` alone (:func:`load_results`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emgdx.config import atomic_write, json_ready
from emgdx.errors import require
from emgdx.evaluation.aggregate import LEVELS
from emgdx.evaluation.metrics import SCALAR_METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from emgdx.evaluation.cv import CVResult

__all__ = [
    "atomic_write",
    "figure_confusion",
    "figure_reliability",
    "figure_roc",
    "figure_subject_probabilities",
    "load_results",
    "render_html",
    "save_results_json",
    "write_report",
]

_SUBSET_TITLES = {"all": "All records", "low": "Low-contraction records only"}


def _as_dict(results: CVResult | Mapping[str, Any]) -> dict[str, Any]:
    to_dict = getattr(results, "to_dict", None)
    return json_ready(to_dict() if callable(to_dict) else results)


def save_results_json(results: CVResult | Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write results as strict JSON (NaN as ``null``), atomically. Returns the path."""
    target = Path(path)
    atomic_write(target, json.dumps(_as_dict(results), indent=2, allow_nan=False))
    return target


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`save_results_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _matplotlib() -> Any:
    return require("matplotlib.figure", "evaluation reports").Figure


def _levels_in(evaluation: Mapping[str, Any]) -> list[str]:
    """The levels a result has (an ensemble of record-level results has no window level)."""
    return [level for level in LEVELS if level in evaluation]


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_confusion(
    results: Mapping[str, Any], subset: str = "all", method: str = "mean"
) -> Figure:
    """Confusion matrices (counts, row-normalised colour) at window, record and subject level."""
    figure_cls = _matplotlib()
    names = results["class_names"]
    evaluation = results["evaluation"][subset][method]
    levels = _levels_in(evaluation)
    fig = figure_cls(figsize=(4.4 * len(levels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(levels)))
    for ax, level in zip(axes, levels, strict=True):
        cm = np.asarray(evaluation[level]["metrics"]["confusion"], dtype=float)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                colour = "white" if share[i, j] > 0.6 else "black"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=colour)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        bal = evaluation[level]["metrics"]["balanced_accuracy"]
        ax.set_title(f"{level} (bal. acc. {_num(bal)})")
    return fig


def figure_roc(results: Mapping[str, Any], subset: str = "all", method: str = "mean") -> Figure:
    """One-vs-rest ROC curves per class at window, record and subject level."""
    figure_cls = _matplotlib()
    evaluation = results["evaluation"][subset][method]
    levels = _levels_in(evaluation)
    fig = figure_cls(figsize=(4.4 * len(levels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(levels)))
    for ax, level in zip(axes, levels, strict=True):
        curves = evaluation[level].get("roc", {})
        for name, curve in curves.items():
            ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {_num(curve['auc'])})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_title(level)
        if curves:
            ax.legend(loc="lower right", fontsize="small")
    return fig


def figure_subject_probabilities(
    results: Mapping[str, Any], subset: str = "all", method: str = "mean"
) -> Figure:
    """Stacked class probabilities per subject, grouped by true class; x marks an error."""
    figure_cls = _matplotlib()
    names = results["class_names"]
    rows = sorted(
        results["tables"][subset][method]["subject"],
        key=lambda r: (
            names.index(r["true"]) if r["true"] in names else len(names),
            r["subject_id"],
        ),
    )
    fig = figure_cls(figsize=(9, 0.3 * max(len(rows), 4) + 1.2), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(rows))
    positions = np.arange(len(rows))
    for name in names:
        values = np.array([r[f"p_{name}"] or 0.0 for r in rows])
        ax.barh(positions, values, left=left, label=name)
        left += values
    for pos, row in zip(positions, rows, strict=True):
        if row["true"] is not None and row["predicted"] != row["true"]:
            ax.text(1.01, pos, "x", va="center", color="crimson", fontweight="bold")
    labels = [f"{r['subject_id']} ({r['true']})" for r in rows]
    ax.set_yticks(positions, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean probability" if method == "mean" else "vote share")
    ax.legend(loc="upper left", bbox_to_anchor=(1.04, 1.0))
    ax.set_title("Per-subject scores (x = wrong)")
    return fig


def figure_reliability(results: Mapping[str, Any]) -> Figure:
    """Record-level reliability diagrams before and after calibration, one panel per site
    (and all records): mean confidence against accuracy per confidence bin."""
    figure_cls = _matplotlib()
    groups = list(results["calibration"])
    fig = figure_cls(figsize=(4.0 * len(groups), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, name in zip(axes, groups, strict=True):
        entry = results["calibration"][name]
        for stage, style in (("before", "o--"), ("after", "s-")):
            rows = entry[f"reliability_{stage}"]
            ece = entry[f"ece_{stage}"]
            ax.plot(
                [r["confidence"] for r in rows],
                [r["accuracy"] for r in rows],
                style,
                label=f"{stage} (ECE {_num(ece)})",
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} ({entry['n_records']} records)")
        ax.legend(loc="upper left", fontsize="small")
    return fig


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _with_ci(value: Any, ci: Sequence[Any] | None) -> str:
    if ci is None or ci[0] is None:
        return _num(value)
    return f"{_num(value)} <small>[{_num(ci[0])}, {_num(ci[1])}]</small>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary_table(evaluation: Mapping[str, Any]) -> str:
    header = ["level", "n", "subjects", *SCALAR_METRICS]
    rows = []
    for level in _levels_in(evaluation):
        ev = evaluation[level]
        rows.append(
            [
                level,
                _num(ev["metrics"]["n"]),
                _num(ev["n_subjects"]),
                *(_with_ci(ev["metrics"][m], ev["ci"].get(m)) for m in SCALAR_METRICS),
            ]
        )
    return _table(header, rows)


def _per_class_table(evaluation: Mapping[str, Any], names: Sequence[str]) -> str:
    header = ["level", "class", "support", "sensitivity", "specificity", "precision", "F1", "AUC"]
    rows = []
    for level in _levels_in(evaluation):
        ev = evaluation[level]
        for name in names:
            pc = ev["metrics"]["per_class"][name]
            rows.append(
                [
                    level,
                    html.escape(name),
                    _num(pc["support"]),
                    _with_ci(pc["sensitivity"], ev["ci"].get(f"sensitivity_{name}")),
                    _with_ci(pc["specificity"], ev["ci"].get(f"specificity_{name}")),
                    _num(pc["precision"]),
                    _with_ci(pc["f1"], ev["ci"].get(f"f1_{name}")),
                    _with_ci(pc["roc_auc"], ev["ci"].get(f"roc_auc_{name}")),
                ]
            )
    return _table(header, rows)


def _subject_table(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    header = ["subject", "true", *(f"P({n})" for n in names), "predicted", "correct", "records"]
    body = [
        [
            html.escape(str(r["subject_id"])),
            html.escape(str(r["true"])),
            *(_num(r[f"p_{n}"]) for n in names),
            html.escape(str(r["predicted"])),
            "yes" if r["correct"] else "<b>no</b>",
            _num(r["n_records"]),
        ]
        for r in rows
    ]
    return _table(header, body)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:0.85em}
.warn{background:#fff3cd;border:1px solid #e0c46c;padding:0.6em}
"""


def render_html(results: CVResult | Mapping[str, Any], *, title: str = "emgdx evaluation") -> str:
    """The self-contained HTML report of a cross-validation (see the module docstring)."""
    res = _as_dict(results)
    names = res["class_names"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Task <b>{html.escape(res['task'])}</b> ({', '.join(map(html.escape, names))}), "
        f"cross-validation <b>{html.escape(res['cv'])}</b> with {len(res['folds'])} folds. "
        "Window probabilities are out-of-fold; records and subjects are aggregated from them. "
        f"Brackets: {_num(100 * _ci_level(res), 0)} % subject-bootstrap confidence intervals.</p>",
    ]
    if res["cv"] == "leaky":
        parts.append(
            "<p class='warn'><b>Leaky evaluation.</b> Windows of one subject were in training "
            "and test: these numbers are inflated and are not a performance estimate.</p>"
        )
    quality = res.get("quality") or {}
    if quality:
        parts.append("<h2>Quality control</h2>")
        parts.append(
            f"<p>{quality['n_records']} records evaluated, {quality['n_clean']} without any "
            "QC flag. Faulty stretches (clipping, flat, corrupt tails) were left out of the "
            "windows; mains hum was notched. Records with each flag:</p>"
        )
        rows = [[html.escape(f), _num(n)] for f, n in sorted(quality["flags"].items())]
        parts.append(_table(["flag", "records"], rows or [["none", "0"]]))
    n_all = _n_records(res["evaluation"].get("all", {}))
    for subset, by_method in res["evaluation"].items():
        parts.append(f"<h2>{html.escape(_SUBSET_TITLES.get(subset, subset))}</h2>")
        if subset != "all" and _n_records(by_method) == n_all:
            parts.append("<p>Every evaluated record is in this subset: as above.</p>")
            continue
        for method, evaluation in by_method.items():
            label = "mean probability" if method == "mean" else "majority vote"
            parts.append(f"<h3>Aggregation: {label}</h3>")
            parts.append(_summary_table(evaluation))
            if method != "mean":
                continue
            parts.append("<h4>Per class</h4>" + _per_class_table(evaluation, names))
            for fig_fn, caption in (
                (figure_confusion, "Confusion matrices"),
                (figure_roc, "ROC curves (one-vs-rest)"),
                (figure_subject_probabilities, "Per-subject probabilities"),
            ):
                png = _png(fig_fn(res, subset, method))
                parts.append(
                    f"<h4>{caption}</h4><img alt='{caption}' src='data:image/png;base64,{png}'>"
                )
        per_subject = res.get("per_subject", {}).get(subset)
        if per_subject:
            parts.append("<h4>Per subject</h4>" + _subject_table(per_subject, names))
    fold_rows = [
        [
            _num(f["fold"]),
            html.escape(", ".join(map(str, f["test_subjects"][:6]))),
            _num(f["n_train_windows"]),
            _num(f["n_test_windows"]),
            _num(f["fit_s"], 2),
            _num(f["predict_s"], 2),
        ]
        for f in res["folds"]
    ]
    if res.get("calibration"):
        parts.append("<h2>Calibration (record level)</h2>")
        parts.append(
            "<p>Temperature scaling fitted on held-out <em>training</em> subjects of each fold "
            "(emgdx.calibration); expected calibration error over 10 confidence bins.</p>"
        )
        parts.append(
            _table(
                ["records", "n", "ECE before", "ECE after"],
                [
                    [
                        html.escape(name),
                        _num(e["n_records"]),
                        _num(e["ece_before"]),
                        _num(e["ece_after"]),
                    ]
                    for name, e in res["calibration"].items()
                ],
            )
        )
        parts.append(
            f'<img alt="reliability" src="data:image/png;base64,{_png(figure_reliability(res))}">'
        )
    if res.get("ood"):
        parts.append("<h2>Out-of-distribution verdicts of the tested records</h2>")
        parts.append(
            _table(
                ["records", "typical", "unusual (warned)", "alien (not interpretable)"],
                [
                    [html.escape(name), _num(c["typical"]), _num(c["unusual"]), _num(c["alien"])]
                    for name, c in res["ood"]["counts"].items()
                ],
            )
        )
    parts.append("<h2>Folds</h2>")
    parts.append(
        _table(
            ["fold", "test subjects", "train windows", "test windows", "fit s", "predict s"],
            fold_rows,
        )
    )
    parts.append("<h2>Configuration</h2><pre>")
    parts.append(html.escape(json.dumps(res.get("config", {}), indent=2)))
    data_hash = html.escape(res.get("data_hash", ""))
    parts.append(f"</pre><p>Data hash (SHA-256 of the windows): <code>{data_hash}</code></p>")
    parts.append("<h2>Software</h2>")
    versions = res.get("versions", {})
    parts.append(
        _table(
            ["package", "version"],
            [[html.escape(k), html.escape(str(v))] for k, v in versions.items()],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _n_records(by_method: Mapping[str, Any]) -> Any:
    """Records evaluated in one subset (None when unknown)."""
    for evaluation in by_method.values():
        return evaluation.get("record", {}).get("metrics", {}).get("n")
    return None


def _ci_level(res: Mapping[str, Any]) -> float:
    for by_method in res["evaluation"].values():
        for by_level in by_method.values():
            for ev in by_level.values():
                return float(ev.get("ci_level", 0.95))
    return 0.95


def write_report(
    results: CVResult | Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    title: str = "emgdx evaluation",
) -> dict[str, Path]:
    """Write ``results.json`` and ``report.html`` into ``out_dir`` (created if needed).

    Parameters
    ----------
    results
        A :class:`~emgdx.evaluation.cv.CVResult` or its :meth:`to_dict` (e.g. read back with
        :func:`load_results`).
    out_dir
        Output folder.
    title
        Heading of the HTML page.

    Returns
    -------
    dict
        ``{"json": path, "html": path}``.
    """
    folder = Path(out_dir)
    res = _as_dict(results)
    json_path = save_results_json(res, folder / "results.json")
    html_path = folder / "report.html"
    atomic_write(html_path, render_html(res, title=title))
    return {"json": json_path, "html": html_path}

"""Evidence figures: attributions drawn on the signal (s, µV) and on time-frequency images.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot state), so they are safe
in threads and servers; save them with ``fig.savefig(...)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError, require
from emgdx.explain.attribution import Attribution, RecordAttribution, top_segments

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "figure_deletion_insertion",
    "figure_feature_importance",
    "figure_image_evidence",
    "figure_record_evidence",
    "figure_top_segments",
]

#: Colour map of evidence (white → dark red): reads on screen and in greyscale print.
EVIDENCE_CMAP = "Reds"
_METHOD_LABELS = {
    "saliency": "saliency",
    "integrated_gradients": "integrated gradients",
    "gradcam": "Grad-CAM",
    "occlusion": "occlusion",
}


def _figure(figsize: tuple[float, float]) -> Figure:
    """A new figure of ``figsize`` inches with constrained layout."""
    figure_cls = require("matplotlib.figure", "figures").Figure
    return figure_cls(figsize=figsize, layout="constrained")


def _normalised(evidence: np.ndarray) -> np.ndarray:
    """Evidence scaled to [0, 1] by its 99th percentile (one spike does not wash out the rest)."""
    finite = evidence[np.isfinite(evidence)]
    top = float(np.quantile(finite, 0.99)) if finite.size else 0.0
    if top <= 0:
        return np.zeros_like(evidence)
    return np.clip(np.nan_to_num(evidence, nan=0.0) / top, 0.0, 1.0)


def _coloured_trace(ax: Any, t: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Any:
    """The signal as a line whose colour and width follow the evidence."""
    from matplotlib.collections import LineCollection

    points = np.column_stack([t, y])
    segments = np.stack([points[:-1], points[1:]], axis=1)
    w = 0.5 * (weight[:-1] + weight[1:])
    ok = np.isfinite(segments).all(axis=(1, 2))
    lines = LineCollection(
        segments[ok],
        array=w[ok],
        cmap=EVIDENCE_CMAP,
        norm=None,
        linewidths=0.5 + 1.2 * w[ok],
    )
    lines.set_clim(0.0, 1.0)
    ax.add_collection(lines)
    return lines


def _decimate_for_plot(t: np.ndarray, *arrays: np.ndarray, max_points: int = 40_000) -> list[Any]:
    """Keep at most ``max_points`` samples (long records would make huge vector files)."""
    step = max(1, int(np.ceil(t.size / max_points)))
    return [t[::step], *(a[::step] for a in arrays)]


def figure_record_evidence(
    explanation: RecordAttribution,
    *,
    segments: pd.DataFrame | None = None,
    title: str | None = None,
) -> Figure:
    """The record's signal (µV over s) coloured by evidence, with the evidence trace below.

    Parameters
    ----------
    explanation
        From :func:`emgdx.explain.attribute_record`.
    segments
        Segments to mark (default: :func:`~emgdx.explain.top_segments`, 3 of 100 ms).
    title
        Figure title (default: record, class explained, its probability and the method).
    """
    segs = top_segments(explanation) if segments is None else segments
    weight = _normalised(explanation.evidence())
    t, y, w = _decimate_for_plot(explanation.time_s, explanation.signal, weight)
    fig = _figure((10, 4.2))
    ax_sig, ax_ev = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax_sig.plot(t, y, color="0.75", linewidth=0.4, zorder=1)
    lines = _coloured_trace(ax_sig, t, y, w)
    finite = y[np.isfinite(y)]
    lim = float(np.abs(finite).max()) * 1.12 if finite.size else 1.0
    ax_sig.set_ylim(-lim, lim)
    ax_sig.set_xlim(float(t[0]), float(t[-1]))
    ax_sig.set_ylabel("amplitude (µV)")
    for k, row in enumerate(segs.itertuples(index=False), start=1):
        for ax in (ax_sig, ax_ev):
            ax.axvspan(row.start_s, row.end_s, color="tab:blue", alpha=0.12, linewidth=0)
        ax_sig.text(row.start_s, lim * 0.92, str(k), color="tab:blue", fontweight="bold")
    ax_ev.fill_between(t, 0, w, color="tab:red", alpha=0.6, linewidth=0)
    ax_ev.set_ylim(0, 1.05)
    ax_ev.set_ylabel("evidence")
    ax_ev.set_xlabel("time (s)")
    fig.colorbar(lines, ax=ax_sig, label="evidence (scaled)", pad=0.01, fraction=0.03)
    p = explanation.record_probs[explanation.target_name]
    method = _METHOD_LABELS.get(explanation.method, explanation.method)
    fig.suptitle(
        title
        or f"{explanation.record_id}: evidence for '{explanation.target_name}' "
        f"(p = {p:.2f}), {method}; numbered boxes = most influential segments",
        fontsize="medium",
    )
    return fig


def figure_top_segments(
    explanation: RecordAttribution,
    *,
    segments: pd.DataFrame | None = None,
    context_ms: float = 50.0,
) -> Figure:
    """Each top segment zoomed in (with ``context_ms`` either side), coloured by evidence."""
    segs = top_segments(explanation) if segments is None else segments
    if segs.empty:
        raise ConfigError(f"{explanation.record_id}: no segment carries evidence to zoom in on")
    weight = _normalised(explanation.evidence())
    fig = _figure((3.4 * len(segs), 2.8))
    axes = np.atleast_1d(fig.subplots(1, len(segs), sharey=True))
    pad = context_ms * 1e-3
    for k, (ax, row) in enumerate(zip(axes, segs.itertuples(index=False), strict=True), 1):
        sel = (explanation.time_s >= row.start_s - pad) & (explanation.time_s <= row.end_s + pad)
        t = explanation.time_s[sel]
        y = explanation.signal[sel]
        ax.plot(t, y, color="0.75", linewidth=0.5)
        _coloured_trace(ax, t, y, weight[sel])
        ax.axvspan(row.start_s, row.end_s, color="tab:blue", alpha=0.10, linewidth=0)
        ax.set_xlim(float(t[0]), float(t[-1]))
        ax.set_title(f"{k}: {row.start_s:.3f}–{row.end_s:.3f} s ({100 * row.share:.0f} %)")
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("amplitude (µV)")
    finite = explanation.signal[np.isfinite(explanation.signal)]
    if finite.size:
        lim = float(np.abs(finite).max()) * 1.05
        axes[0].set_ylim(-lim, lim)
    return fig


def figure_image_evidence(
    attribution: Attribution,
    window: int = 0,
    *,
    heat: Attribution | None = None,
) -> Figure:
    """A window's spectrogram/scalogram, and the same image with the attribution overlaid.

    Parameters
    ----------
    attribution
        Attributions of an image model (``stft`` or ``cwt`` representation).
    window
        Which window to draw.
    heat
        Overlay another attribution of the same windows (e.g. Grad-CAM) instead.
    """
    over = heat or attribution
    if attribution.inputs.ndim != 4 or attribution.image_times_s is None:
        raise ConfigError("figure_image_evidence needs a spectrogram or scalogram model")
    if not 0 <= window < len(attribution):
        raise ConfigError(f"window {window} out of range [0, {len(attribution)})")
    image = attribution.inputs[window, 0]
    values = over.values[window, 0]
    if over.signed:
        values = np.clip(values, 0.0, None)
    peak = float(values.max())
    values = values / peak if peak > 0 else values
    times = attribution.image_times_s
    freqs = attribution.image_freqs_hz
    assert freqs is not None
    start = float(attribution.index["start_s"].iloc[window])
    extent = (start + times[0], start + times[-1], 0, len(freqs))
    fig = _figure((10, 3.6))
    axes = fig.subplots(1, 2, sharey=True)
    kind = "scalogram (CWT)" if attribution.representation == "cwt" else "spectrogram (STFT)"
    for ax, overlay in zip(axes, (False, True), strict=True):
        im = ax.imshow(image, origin="lower", aspect="auto", extent=extent, cmap="viridis")
        if overlay:
            ax.imshow(
                values,
                origin="lower",
                aspect="auto",
                extent=extent,
                cmap=EVIDENCE_CMAP,
                alpha=np.clip(values, 0, 1) * 0.85,
                vmin=0,
                vmax=1,
            )
            ax.contour(
                np.linspace(extent[0], extent[1], values.shape[1]),
                np.linspace(0.5, len(freqs) - 0.5, values.shape[0]),
                values,
                levels=[0.5],
                colors="white",
                linewidths=0.8,
            )
        ax.set_xlabel("time (s)")
        method = _METHOD_LABELS.get(over.method, over.method)
        ax.set_title(f"{kind}" + (f" + {method}" if overlay else ""))
    ticks = np.linspace(0, len(freqs) - 1, 6).round().astype(int)
    axes[0].set_yticks(ticks + 0.5, [f"{freqs[i]:.0f}" for i in ticks])
    axes[0].set_ylabel("frequency (Hz)")
    fig.colorbar(im, ax=axes, label="log power (model input)", pad=0.01, fraction=0.03)
    cls = attribution.class_names[int(over.target[window])]
    p = float(attribution.probs[window, int(over.target[window])])
    fig.suptitle(
        f"{attribution.index['record_id'].iloc[window]}, window at {start:.2f} s: "
        f"evidence for '{cls}' (p = {p:.2f})",
        fontsize="medium",
    )
    return fig


def figure_deletion_insertion(curves: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Deletion and insertion curves per method (solid) against a random order (dotted).

    Parameters
    ----------
    curves
        ``method -> deletion_insertion(...) result``.
    """
    fig = _figure((10, 3.8))
    axes = fig.subplots(1, 2, sharey=True)
    for kind, ax in zip(("deletion", "insertion"), axes, strict=True):
        random_drawn = False
        for method, result in curves.items():
            frac = 100 * np.asarray(result["fractions"])
            auc = result["auc"][f"{kind}_attribution"]
            ax.plot(
                frac,
                result[kind]["attribution"],
                label=f"{_METHOD_LABELS.get(method, method)} ({auc:.2f})",
            )
            if not random_drawn:
                rnd = result["auc"][f"{kind}_random"]
                ax.plot(frac, result[kind]["random"], ":", color="0.3", label=f"random ({rnd:.2f})")
                random_drawn = True
        ax.set_xlabel(f"input {'removed' if kind == 'deletion' else 'restored'} (%)")
        ax.set_title(
            f"{kind} (area; {'lower' if kind == 'deletion' else 'higher'} = more faithful)"
        )
        ax.legend(fontsize="small")
    axes[0].set_ylabel("probability of the explained class")
    axes[0].set_ylim(0, 1)
    return fig


def figure_feature_importance(importance: pd.DataFrame, k: int = 15) -> Figure:
    """The ``k`` most important features (bars with ± std)."""
    top = importance.head(k).iloc[::-1]
    fig = _figure((6, 0.28 * len(top) + 1.2))
    ax = fig.subplots()
    ax.barh(top["feature"], top["importance"], xerr=top["std"], color="tab:red", alpha=0.7)
    ax.set_xlabel("importance")
    ax.set_title("Feature importance")
    return fig

"""Faithfulness of attributions: deletion/insertion curves and the disease-signature share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emgdx.errors import ConfigError
from emgdx.explain.attribution import Attribution, _baseline, _batches, _torch_module
from emgdx.recording import Windows

if TYPE_CHECKING:
    import torch
    from torch import nn

    from emgdx.pipeline import Pipeline


def _target_probs(
    model: nn.Module, x: torch.Tensor, aux: torch.Tensor | None, target: torch.Tensor
) -> np.ndarray:
    import torch

    with torch.no_grad():
        p = torch.softmax(model(x, aux), dim=1)
    return p.gather(1, target[:, None])[:, 0].numpy()


def deletion_insertion(
    pipeline: Pipeline,
    windows: Windows,
    attribution: Attribution,
    *,
    steps: int = 20,
    n_random: int = 3,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Deletion and insertion curves of the target probability, attribution order vs random.

    Deletion replaces the input elements (samples, or time-frequency cells) of each window with
    the baseline of :func:`attribute_windows` (silence / row average), most attributed first;
    insertion starts from the baseline and puts the most attributed elements back first. A
    faithful attribution makes the target probability fall faster (smaller deletion area) and
    rise faster (larger insertion area) than a random order. The amplitude side input is left as
    is: the curves test the attribution of the waveform or image.

    Returns
    -------
    dict
        ``fractions`` ``[steps + 1]``; ``deletion`` / ``insertion``: mean target-probability
        curves for ``"attribution"`` and ``"random"`` (random averaged over ``n_random``
        orders); ``auc``: the areas under each of the four curves (trapezoid over the fraction
        axis); ``n_windows``.
    """
    import torch

    _torch_module(pipeline)
    if steps < 1 or n_random < 1:
        raise ConfigError("steps and n_random must be >= 1")
    if len(windows) != len(attribution):
        raise ConfigError("windows and attribution differ in length")
    arrays = pipeline.model_inputs(windows)
    model = _torch_module(pipeline)
    x_all = torch.from_numpy(np.ascontiguousarray(arrays["x"], dtype=np.float32))
    aux_np = arrays.get("aux")
    aux_all = None if aux_np is None else torch.from_numpy(np.ascontiguousarray(aux_np, np.float32))
    target_all = torch.from_numpy(attribution.target)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    rng = np.random.default_rng(seed)
    scores = attribution.values if attribution.signed else np.abs(attribution.values)
    curves = {
        kind: {order: np.zeros(steps + 1) for order in ("attribution", "random")}
        for kind in ("deletion", "insertion")
    }
    n = len(windows)
    for sl in _batches(n, batch_size):
        x = x_all[sl]
        base = _baseline(x)
        aux = None if aux_all is None else aux_all[sl]
        tgt = target_all[sl]
        flat_scores = scores[sl].reshape(x.shape[0], -1)
        n_el = flat_scores.shape[1]
        orders = {"attribution": [np.argsort(-flat_scores, axis=1, kind="stable")]}
        orders["random"] = [
            np.argsort(rng.random((x.shape[0], n_el)), axis=1) for _ in range(n_random)
        ]
        for name, order_list in orders.items():
            for order in order_list:
                ranks = np.empty_like(order)
                rows = np.arange(order.shape[0])[:, None]
                ranks[rows, order] = np.arange(n_el)[None, :]
                ranks_t = torch.from_numpy(ranks.reshape(x.shape))
                for j, frac in enumerate(fractions):
                    chosen = ranks_t < round(frac * n_el)
                    deleted = torch.where(chosen, base, x)
                    inserted = torch.where(chosen, x, base)
                    w = 1.0 / len(order_list)
                    curves["deletion"][name][j] += w * _target_probs(model, deleted, aux, tgt).sum()
                    curves["insertion"][name][j] += (
                        w * _target_probs(model, inserted, aux, tgt).sum()
                    )
    for kind in curves:
        for name in curves[kind]:
            curves[kind][name] /= n
    auc = {
        f"{kind}_{name}": float(np.trapezoid(curve, fractions))
        for kind, by_name in curves.items()
        for name, curve in by_name.items()
    }
    return {
        "fractions": fractions,
        "deletion": curves["deletion"],
        "insertion": curves["insertion"],
        "auc": auc,
        "n_windows": n,
        "method": attribution.method,
    }


def signature_share(attribution: Attribution, masks: np.ndarray) -> pd.DataFrame:
    """Share of each window's evidence on disease-signature samples, vs the chance share.

    Parameters
    ----------
    attribution
        Attributions of windows of simulated records.
    masks
        ``[n, n_times]`` boolean: which samples of each window carry the disease signature
        (from :meth:`emgdx.simulate.GroundTruth.signature_mask`, mapped onto the windows).

    Returns
    -------
    pandas.DataFrame
        Per window with any signature sample and any evidence: ``share`` (evidence on the mask
        / all evidence), ``chance`` (mask samples / all samples) and ``ratio``.
    """
    evidence = attribution.evidence()
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != evidence.shape:
        raise ConfigError(f"masks {masks.shape} do not match the attributions {evidence.shape}")
    total = evidence.sum(axis=1)
    on = np.where(masks, evidence, 0.0).sum(axis=1)
    chance = masks.mean(axis=1)
    keep = (chance > 0) & (chance < 1) & (total > 0)
    frame = pd.DataFrame(
        {
            "record_id": attribution.index["record_id"].astype(str).to_numpy()[keep],
            "share": on[keep] / total[keep],
            "chance": chance[keep],
        }
    )
    frame["ratio"] = frame["share"] / frame["chance"]
    return frame


def window_masks(windows: Windows, masks: dict[str, tuple[np.ndarray, float]]) -> np.ndarray:
    """Map per-record sample masks (at their own rate) onto the windows' samples.

    Parameters
    ----------
    windows
        Windows (at the pipeline's rate).
    masks
        ``record_id -> (mask, fs_hz)`` of the original records.
    """
    out = np.zeros((len(windows), windows.n_samples), dtype=bool)
    offsets = np.arange(windows.n_samples) / windows.fs_hz
    for i, (rid, start) in enumerate(
        zip(windows.index["record_id"].astype(str), windows.index["start_s"], strict=True)
    ):
        if rid not in masks:
            raise ConfigError(f"no mask for record {rid}")
        mask, fs = masks[rid]
        idx = np.minimum(np.round((start + offsets) * fs).astype(np.int64), mask.size - 1)
        out[i] = mask[idx]
    return out

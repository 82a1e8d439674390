"""The methods paragraph: exactly what processing ran, with references (after NeuroKit2's idea).

Everything is read from the fitted pipeline's configuration, so the text cannot drift from what
the code did: filter band and order, notch, resampling, windows, representation, model, training
data, aggregation, explanation method and reference ranges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

__all__ = ["REFERENCES", "methods_paragraph"]

#: Short key -> full reference, cited as [n] in the order first used.
REFERENCES: dict[str, str] = {
    "scipy": "Virtanen P. et al. SciPy 1.0: fundamental algorithms for scientific computing in "
    "Python. Nat Methods 17:261–272, 2020.",
    "hudgins": "Hudgins B., Parker P., Scott R.N. A new strategy for multifunction myoelectric "
    "control. IEEE Trans Biomed Eng 40:82–94, 1993.",
    "torrence": "Torrence C., Compo G.P. A practical guide to wavelet analysis. Bull Am Meteorol "
    "Soc 79:61–78, 1998.",
    "pywt": "Lee G.R. et al. PyWavelets: a Python package for wavelet analysis. J Open Source "
    "Softw 4:1237, 2019.",
    "pytorch": "Paszke A. et al. PyTorch: an imperative style, high-performance deep learning "
    "library. NeurIPS 2019.",
    "sklearn": "Pedregosa F. et al. Scikit-learn: machine learning in Python. J Mach Learn Res "
    "12:2825–2830, 2011.",
    "adam": "Kingma D.P., Ba J. Adam: a method for stochastic optimization. ICLR 2015.",
    "captum": "Kokhlikyan N. et al. Captum: a unified and generic model interpretability library "
    "for PyTorch. arXiv:2009.07896, 2020.",
    "saliency": "Simonyan K., Vedaldi A., Zisserman A. Deep inside convolutional networks: "
    "visualising image classification models and saliency maps. ICLR workshop 2014.",
    "integrated_gradients": "Sundararajan M., Taly A., Yan Q. Axiomatic attribution for deep "
    "networks. ICML 2017.",
    "gradcam": "Selvaraju R.R. et al. Grad-CAM: visual explanations from deep networks via "
    "gradient-based localization. ICCV 2017.",
    "occlusion": "Zeiler M.D., Fergus R. Visualizing and understanding convolutional networks. "
    "ECCV 2014.",
    "n2001": "Nikolic M. Detailed analysis of clinical electromyography signals. PhD thesis, "
    "University of Copenhagen, 2001; McGill K.C., Lateva Z.C., Marateb H.R. EMGLAB: an "
    "interactive EMG decomposition program. J Neurosci Methods 149:121–133, 2005.",
    "algiers": "Messekher A., Mekaoui S., Kedir-Talha M., Kediha M.I., Mostefaoui F. "
    "Electromyographic data recordings during isometric contractions of the biceps brachii and "
    "deltoid collected from patients and healthy subjects. Mendeley Data V1, 2023, "
    "doi:10.17632/543xpjycj9.1.",
}

_MODEL_TEXT = {
    "cnn1d": "a one-dimensional convolutional neural network on the waveform",
    "cnn2d_stft": "a two-dimensional convolutional neural network on the spectrogram",
    "cnn2d_cwt": "a two-dimensional convolutional neural network on the scalogram",
    "cnn_lstm": "a convolutional network followed by a bidirectional LSTM on the waveform",
    "svm": "a support-vector machine on hand-crafted features",
    "random_forest": "a random forest on hand-crafted features",
    "gradient_boosting": "gradient-boosted trees on hand-crafted features",
    "bagging": "a bagging ensemble on hand-crafted features",
    "adaboost": "an AdaBoost ensemble on hand-crafted features",
}
_METHOD_TEXT = {
    "saliency": "input-gradient saliency",
    "integrated_gradients": "integrated gradients",
    "gradcam": "Grad-CAM on the last convolutional block",
    "occlusion": "occlusion of 10 ms patches",
}


class _Cite:
    """Numbers references in the order they are first cited."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def __call__(self, *keys: str) -> str:
        nums = []
        for key in keys:
            if key not in self.order:
                self.order.append(key)
            nums.append(str(self.order.index(key) + 1))
        return "[" + ", ".join(nums) + "]"

    def references(self) -> list[str]:
        return [REFERENCES[k] for k in self.order]


def _fmt_hz(value: float) -> str:
    return f"{value / 1000:g} kHz" if value >= 1000 else f"{value:g} Hz"


def _representation_text(rep: dict[str, Any], cite: _Cite) -> str:
    name = rep.get("name")
    aux = rep.get("aux") or []
    side = (
        " The window's log10 RMS amplitude (µV) was given to the model as a separate input, so "
        "that amplitude and waveform shape are weighed separately."
        if aux
        else ""
    )
    if name == "raw":
        return "Each window was z-scored by its own mean and standard deviation." + side
    if name == "stft":
        return (
            f"Each window was turned into a log-power spectrogram (short-time Fourier transform, "
            f"{rep['window_ms']:g} ms Hann segments, {100 * rep['overlap']:g} % overlap, up to "
            f"{_fmt_hz(rep['f_max_hz'])}) {cite('scipy')}, z-scored per window." + side
        )
    if name == "cwt":
        return (
            f"Each window was turned into a log-power scalogram (complex Morlet continuous "
            f"wavelet transform, {rep['n_scales']} log-spaced frequencies from "
            f"{_fmt_hz(rep['f_min_hz'])} to {_fmt_hz(rep['f_max_hz'])}, averaged into "
            f"{rep['n_time']} time columns) {cite('torrence')}, z-scored per window." + side
        )
    if name == "features":
        return (
            "Each window was described by hand-crafted measures: time-domain "
            f"{cite('hudgins')}, spectral (Welch), discrete-wavelet ({rep['wavelet']}, "
            f"{rep['wavelet_level']} levels) {cite('pywt')} and MUAP-shape measures (spikes "
            f"above {rep['spike_noise_k']:g} noise floors, their duration, phases and "
            "amplitude, and turns)."
        )
    return f"Representation: {name}."


def methods_paragraph(
    pipeline: Pipeline,
    *,
    explain_method: str | None = None,
    source_fs_hz: float | None = None,
    qc_ran: bool = True,
) -> tuple[str, list[str]]:
    """The methods paragraph of a report and its numbered references.

    Parameters
    ----------
    pipeline
        The fitted pipeline that produced the result.
    explain_method
        The attribution method of the evidence figures (None: no figures).
    source_fs_hz
        The sampling rate of the recording(s), when known.
    qc_ran
        Whether quality control ran.

    Returns
    -------
    text, references
        The paragraph (plain text with [n] citations) and the reference list in citation order.
    """
    cite = _Cite()
    pre = pipeline.preprocess
    rep = pipeline.representation.to_dict()
    parts: list[str] = []
    rate = f" recorded at {_fmt_hz(source_fs_hz)}" if source_fs_hz else ""
    if qc_ran:
        parts.append(
            f"The signal{rate} was checked for empty or flat stretches, amplifier clipping, "
            "corrupt data at the end of the file, mains interference and insufficient length; "
            "samples marked unusable (with a 50 ms margin) were left out."
        )
    elif rate:
        parts.append(f"The signal was{rate}.")
    steps = []
    fs = pipeline.fs_hz_ or pre.target_fs_hz
    if fs:
        steps.append(f"resampled to {_fmt_hz(fs)} (polyphase filter)")
    if pre.band_hz is not None:
        lo, hi = pre.band_hz
        steps.append(
            f"band-pass filtered from {lo:g} to {hi:g} Hz (zero-phase Butterworth, order "
            f"{pre.filter_order}, second-order sections)"
        )
    if pre.notch == "auto":
        steps.append(
            "notch-filtered at the mains frequency and its harmonics only where mains "
            "interference was detected"
        )
    elif pre.notch:
        steps.append(f"notch-filtered at {pre.notch} Hz and {pre.notch_harmonics - 1} harmonics")
    parts.append(
        "It was "
        + ", ".join(steps)
        + f" {cite('scipy')}, and cut into {pre.window_s:g} s windows every {pre.hop_s:g} s."
    )
    parts.append(_representation_text(rep, cite))
    model = pipeline.model_name
    model_text = _MODEL_TEXT.get(model, model)
    assert pipeline.model_ is not None
    lib = cite(pipeline.model_.library)
    n_subj = len(pipeline.train_subjects_)
    classes = ", ".join(pipeline.class_names)
    train = pipeline.train
    optimizer = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD with momentum"}.get(
        train.optimizer, train.optimizer
    )
    training = (
        f" trained with {optimizer}"
        f"{' ' + cite('adam') if train.optimizer.startswith('adam') else ''}, class-balanced "
        "loss and early stopping on held-out training subjects"
        if pipeline.model_.has_weights
        else ""
    )
    on_data = f" on {n_subj} subjects" if n_subj else ""
    parts.append(
        f"Class probabilities ({classes}) came from {model_text} {lib}{training}{on_data}; "
        f"window probabilities were averaged over each record"
        + (" (majority vote)" if pipeline.aggregation == "vote" else "")
        + ", and their spread is given as a 95 % interval from a block bootstrap over the "
        "record's windows (it reflects the consistency of the record, not the uncertainty "
        "between patients)."
    )
    if explain_method:
        how = _METHOD_TEXT.get(explain_method, explain_method)
        parts.append(
            f"Evidence on the signal was computed with {how} "
            f"{cite(explain_method, 'captum')} for the predicted class and averaged over "
            "overlapping windows; the highlighted segments hold the most evidence."
        )
    ref = pipeline.reference_ or {}
    if ref.get("available"):
        parts.append(
            "Quantitative measures are medians over the record's windows, compared with the "
            f"2.5th–97.5th percentile range of {ref.get('n_records', 0)} records from "
            f"{ref.get('n_subjects', 0)} healthy subjects of the training data "
            "(matched for contraction level where known)."
        )
    known = {  # cited only when named (citing numbers the reference)
        "n2001": "EMGLAB N2001 biceps brachii recordings (Copenhagen)",
        "algiers": "biceps brachii and deltoid recordings of Mustapha Pacha University "
        "Hospital, Algiers",
    }
    sites = set(pipeline.train_sites_)
    if (
        not sites
        and set(pipeline.train_subjects_)
        and all(s.upper().startswith("N2001") for s in pipeline.train_subjects_)
    ):
        sites = {"n2001"}  # a model saved before sites were recorded
    if sites and sites <= set(known):
        named = [f"{known[s]} {cite(s)}" for s in sorted(sites)]
        parts.append("Training data: " + " and ".join(named) + ".")
    return " ".join(parts), cite.references()

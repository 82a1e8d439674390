"""Why did the model decide that? Attributions on the signal itself, and how faithful they are.

Torch models are explained through captum's ``attribute()`` contract with four methods:

- ``saliency``: |d logit / d input| (Simonyan et al. 2014);
- ``integrated_gradients``: path integral of gradients from a baseline (Sundararajan et al.
  2017); baseline = silence for raw windows, each frequency row's own time average for images
  (the image with its temporal structure removed), and the training mean for the amplitude side
  input (read from the model's aux batch-norm running mean), so the amplitude's attribution is
  "how much its deviation from the average training window mattered";
- ``gradcam``: Grad-CAM on the last convolutional block (Selvaraju et al. 2017), upsampled to
  the input (1-D for waveform models, 2-D for spectrogram/scalogram models);
- ``occlusion``: the logit drop when a patch is replaced by the baseline (Zeiler & Fergus 2014).

Every attribution is of the target class's logit, and every one is also projected onto the
window's time axis (samples at the pipeline's rate), so a record's explanation can be stitched
over its overlapping windows and drawn on the signal in seconds and µV. Classical models get
per-feature importance (permutation importance on given windows, or the model's own).

Faithfulness is measured, not assumed: :func:`deletion_insertion` removes (or inserts) the most
attributed input elements first and tracks the target probability against a random order;
:func:`signature_share` measures, on simulated records, how much positive attribution falls on
the samples that carry the disease signature, against the share those samples have of the
window (chance).
"""

from emgdx.explain.attribution import (
    METHODS,
    SIGNED,
    Attribution,
    RecordAttribution,
    attribute_record,
    attribute_windows,
    feature_importance,
    top_segments,
)
from emgdx.explain.faithfulness import (
    deletion_insertion,
    signature_share,
    window_masks,
)

__all__ = [
    "METHODS",
    "SIGNED",
    "Attribution",
    "RecordAttribution",
    "attribute_record",
    "attribute_windows",
    "deletion_insertion",
    "feature_importance",
    "signature_share",
    "top_segments",
    "window_masks",
]

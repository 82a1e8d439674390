"""The model emgdx ships, and the configuration ``emgdx train`` fits when given no model options.

The configuration is the best one the two-hospital study found (``docs/multisite.md``):
a random forest on the handcrafted features (time, spectral, wavelet and spike measures) of
the default front end, every subject weighing the same in training. In pooled subject-wise
cross-validation of both hospitals it scored subject balanced accuracy 0.95 (Copenhagen) and
0.78 (Algiers) against 0.93 and 0.54 for the 1-D CNN, and it also transferred better to the
other hospital. The shipped model is exactly
this configuration trained on both hospitals (``emgdx train ../shared/data/n2001
../shared/data/algiers``); its data, figures, intended use and limits are in
``docs/model-card.md`` (the same text is in :data:`DEFAULT_MODEL_DIR` as ``MODEL_CARD.md``).

``emgdx predict FILE``, ``emgdx serve`` and ``emgdx monitor`` use it when no model is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from emgdx.errors import PipelineLoadError

if TYPE_CHECKING:
    from emgdx.pipeline import Pipeline

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_DIR", "default_model_dir", "default_pipeline"]

#: Model of the default configuration (its representation is the model's own: features).
DEFAULT_MODEL = "random_forest"
#: Every class, and every subject within a class, weighs the same in training: windows per
#: subject differ more than tenfold between the hospitals
#: (:func:`emgdx.tasks.subject_balanced_weights`).
DEFAULT_BALANCE: Final = "subjects"
#: Where the shipped model lives inside the installed package.
DEFAULT_MODEL_DIR = Path(__file__).with_name("default")


def default_pipeline(seed: int = 0, task: str = "3class") -> Pipeline:
    """A fresh, unfitted pipeline of the default configuration (module docstring)."""
    from emgdx.pipeline import Pipeline
    from emgdx.training import TrainConfig

    return Pipeline(
        model=DEFAULT_MODEL, task=task, train=TrainConfig(seed=seed, balance=DEFAULT_BALANCE)
    )


def default_model_dir() -> Path:
    """The shipped model's folder.

    Raises
    ------
    PipelineLoadError
        The installation lacks it (a package built without its data files).
    """
    if not (DEFAULT_MODEL_DIR / "pipeline.json").is_file():
        raise PipelineLoadError(
            f"{DEFAULT_MODEL_DIR}: the shipped model is missing from this installation; "
            "reinstall emgdx, or name a model folder written by `emgdx train`"
        )
    return DEFAULT_MODEL_DIR

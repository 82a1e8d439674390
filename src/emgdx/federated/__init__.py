"""Federated learning with Flower: each hospital (site) trains the same Pipeline on its own
subjects; FedAvg, FedProx and FedBN; Flower simulation or real processes (``emgdx federated``).

Needs the ``federated`` extra (``pip install 'emgdx[federated]'``). See docs/federated.md.
"""

from typing import TYPE_CHECKING

from emgdx.federated.core import STRATEGIES, FedSettings, SiteSpec

if TYPE_CHECKING:
    from emgdx.federated.run import deploy, simulate

__all__ = ["STRATEGIES", "FedSettings", "SiteSpec", "deploy", "simulate"]


def __getattr__(name: str) -> object:
    # Flower is imported only when a run is asked for.
    if name in ("simulate", "deploy"):
        from emgdx.federated import run

        return getattr(run, name)
    raise AttributeError(name)

"""Where the real data lives.

The real clinical data is never part of the repository. It is found at ``$EMGDX_DATA`` when
that is set (and only there), else at ``../shared/data`` beside the project checkout (the layout
developers and CI have), else at ``./shared/data`` or ``../shared/data`` from the current
directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SITES", "data_root", "n2001_dir", "site_dir"]

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The real sites (hospitals) a developer has, by folder name: Copenhagen (EMGLAB N2001) and
#: Algiers (Mustapha Pacha University Hospital).
SITES: tuple[str, ...] = ("n2001", "algiers")


def data_root() -> Path | None:
    """The folder holding ``n2001/`` etc., or ``None`` when it cannot be found."""
    env = os.environ.get("EMGDX_DATA")
    if env:  # an explicit location is the only one looked at: no silent fallback
        return Path(env) if Path(env).is_dir() else None
    candidates = [
        _PROJECT_ROOT.parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
    ]
    for cand in candidates:
        if cand.is_dir():
            return cand
    return None


def site_dir(name: str) -> Path | None:
    """The folder of one site's WFDB records (e.g. ``"algiers"``), or ``None`` when absent."""
    root = data_root()
    if root is None:
        return None
    path = root / name
    return path if path.is_dir() and any(path.glob("*.hea")) else None


def n2001_dir() -> Path | None:
    """The EMGLAB N2001 folder (``.hea`` + ``.bin`` pairs), or ``None`` when absent."""
    return site_dir("n2001")

"""Terminal output for the command-line tools: rich consoles that never read text as markup.

File names, record ids, clinic names and error messages are the user's text and may hold
square brackets (``rec[1].hea``, ``pip install 'emgdx[ml]'``); rich would take those for
markup tags and drop them, or fail on one that looks like a closing tag. So every console
of the CLI has markup off, and styled text is built explicitly with :func:`labelled`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = ["labelled", "plain_console"]


def plain_console(**kwargs: Any) -> Console:
    """A rich console with markup off (tables, panels and prints show text as given)."""
    return Console(markup=False, **kwargs)


def labelled(label: str, style: str, message: str = "") -> Text:
    """``label`` in ``style``, then ``message`` as plain text.

    ``labelled("error:", "bold red", message)`` is the CLI's error line.
    """
    return Text.assemble((label, style), f" {message}" if message else "")

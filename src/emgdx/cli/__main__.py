"""``python -m emgdx.cli``: the ``emgdx`` command."""

from emgdx.cli import main

main()

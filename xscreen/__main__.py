"""``python -m xscreen``: the same as the ``xscreen`` command."""

from .cli import main

main()

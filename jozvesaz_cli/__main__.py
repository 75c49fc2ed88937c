"""Makes ``python -m jozvesaz_cli`` behave like the ``jozvesaz`` command."""

from jozvesaz_cli.cli import main

main()

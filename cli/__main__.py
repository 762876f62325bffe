"""``python -m cli``: the same as the ``prm-mirror`` command."""

from cli import main

main()

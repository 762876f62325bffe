"""``prm-mirror``: the command line, a thin shell over ``mirror.Mirror``.

Each module holds one family of commands and registers them on the :func:`main` group in
``cli.app``; everything a command does, an embedding application can do through ``Mirror``.
"""

from importlib.metadata import entry_points

from cli import (
    access_commands,
    daemon_command,
    outbox_commands,
    read_commands,
    registration_commands,
    sandbox_commands,
    setup_commands,
    sync_commands,
)
from cli.app import main
from cli.plugins import plugin_command

__all__ = ["main"]
# the command modules register themselves on ``main`` when imported
COMMAND_MODULES = (
    access_commands,
    daemon_command,
    outbox_commands,
    registration_commands,
    read_commands,
    sandbox_commands,
    setup_commands,
    sync_commands,
)
# commands other installed packages add (the portal's, for one)
for entry in entry_points(group="prm_mirror.commands"):
    main.add_command(plugin_command(entry))

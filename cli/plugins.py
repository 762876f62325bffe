"""Commands other installed packages add through the ``prm_mirror.commands`` entry point.

A package whose optional dependencies are not installed must not break the whole command line:
its command is still listed, and running it says which extra to install.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint

import click


def plugin_command(entry: EntryPoint) -> click.Command:
    """The click command ``entry`` names, or one that explains why it cannot load."""
    try:
        command = entry.load()
    except ImportError as exc:
        return missing_extra(entry.name, exc)
    if not isinstance(command, click.Command):
        raise TypeError(f"entry point {entry.name!r} is not a click command: {command!r}")
    return command


def missing_extra(name: str, error: ImportError) -> click.Command:
    """A stand-in for command ``name`` that fails with the install that would bring it."""

    @click.command(
        name,
        help=f"(needs: pip install 'prm-mirror[{name}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )
    def unavailable() -> None:
        raise click.ClickException(
            f"`prm-mirror {name}` needs its optional dependencies: "
            f"pip install 'prm-mirror[{name}]' ({error})"
        )

    return unavailable


def needs_extra(extra: str, error: ImportError) -> click.ClickException:
    """The error for a command whose optional dependencies are missing."""
    return click.ClickException(
        f"this needs the {extra} extra: pip install 'prm-mirror[{extra}]' ({error})"
    )

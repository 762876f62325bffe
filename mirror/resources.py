"""The files shipped with the engine: the default schemas and the example configs.

In a source checkout (or an editable install) they are ``schemas/`` and ``config/`` at the top of
the tree; an installed wheel carries them inside the package as ``mirror/_data/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory of shipped files called ``name`` (``"schemas"`` or ``"config"``)."""
    installed = _PACKAGE / "_data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name

"""The files shipped with the engine (the default schemas and the example configs), and where a
CRM's schema file is found.

In a source checkout (or an editable install) they are ``schemas/`` and ``config/`` at the top of
the tree; an installed wheel carries them inside the package as ``mirror/_data/``. An adapter
package may bring its CRM's schema file itself (its plugin's ``schema_path``).
"""

from __future__ import annotations

from pathlib import Path

from mirror.registry import find_plugin

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The directory of shipped files called ``name`` (``"schemas"`` or ``"config"``)."""
    installed = _PACKAGE / "_data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


def schema_file(crm: str, schemas_dir: str | Path | None = None) -> Path:
    """The schema file of ``crm``: ``<crm>.toml`` in ``schemas_dir`` when the config names one,
    else the one the CRM's adapter plugin brings, else the engine's shipped ``<crm>.toml``."""
    if schemas_dir:
        return Path(schemas_dir) / f"{crm}.toml"
    plugin = find_plugin(crm)
    brought = plugin.schema_path() if plugin is not None else None
    return Path(brought) if brought else data_dir("schemas") / f"{crm}.toml"

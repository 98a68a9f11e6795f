"""``facewire config show``: the merged configuration, each value with where it came from."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from facewire.config import Section, Settings, load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport pydantic-settings depends on
    import tomli as tomllib

SECRET_FIELDS = {"password"}


def config_file_in_use(config_file: Path | None) -> Path | None:
    """``--config``, else ``$FACEWIRE_CONFIG``, else none."""
    if config_file is not None:
        return config_file
    named = os.environ.get("FACEWIRE_CONFIG")
    return Path(named) if named else None


def merged_rows(config_file: Path | None) -> list[dict[str, Any]]:
    """One row per setting: key, value (secrets masked), source (default, file PATH or env VARIABLE)."""
    settings = load_settings(config_file)
    path = config_file_in_use(config_file)
    from_file = tomllib.loads(path.read_text()) if path is not None else {}
    rows = []
    for section_name in Settings.model_fields:
        section: Section = getattr(settings, section_name)
        for field in type(section).model_fields:
            variable = f"FACEWIRE_{section_name.upper()}__{field.upper()}"
            if variable in os.environ:
                source = f"env {variable}"
            elif field in from_file.get(section_name, {}):
                source = f"file {path}"
            else:
                source = "default"
            value = getattr(section, field)
            shown = "***" if field in SECRET_FIELDS and value else value
            rows.append({"key": f"{section_name}.{field}", "value": jsonable(shown), "source": source})
    return rows


def jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value

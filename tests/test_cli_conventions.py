"""CLI conventions (issue 19, item 8): --version everywhere, `facewire config show`, misspelt variables warned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facewire import __version__
from harness.processes import run_module

SCRIPTS = {"facewire": "facewire_console", "edge-agent": "edge_agent"}
SCRIPTS |= {"classifier-service": "classifier_service", "alert-service": "alert_service"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_console_script_has_version(script: str) -> None:
    result = run_module(SCRIPTS[script], ["--version"], {}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_config_show_tells_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "facewire.toml"
    config.write_text('[alerts]\nunknown_count = 7\n[mqtt]\npassword = "hunter2"\n')
    env = {"FACEWIRE_CLASSIFIER__THRESHOLD": "0.51", "FACEWIRE_CONFIG": ""}
    result = run_module("facewire_console", ["config", "show", "--config", str(config), "--json"], env)
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["classifier.threshold"] == {
        "key": "classifier.threshold",
        "value": 0.51,
        "source": "env FACEWIRE_CLASSIFIER__THRESHOLD",
    }
    assert rows["alerts.unknown_count"]["value"] == 7 and rows["alerts.unknown_count"]["source"] == f"file {config}"
    assert rows["edge.min_face"]["source"] == "default"
    assert rows["mqtt.password"]["value"] == "***" and "hunter2" not in result.stdout


def test_a_misspelt_variable_is_warned_about_with_the_likely_name() -> None:
    env = {"FACEWIRE_CLASIFIER__THRESHOLD": "0.4", "FACEWIRE_CONFIG": ""}
    result = run_module("facewire_console", ["config", "show", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert "FACEWIRE_CLASIFIER__THRESHOLD matches no setting" in result.stderr
    assert "did you mean FACEWIRE_CLASSIFIER__THRESHOLD?" in result.stderr

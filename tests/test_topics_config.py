"""Topic names and configuration precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from facewire.config import load_settings, reference_rows
from facewire.errors import ConfigError
from facewire.topics import Topics, matches


def test_every_published_topic_has_a_subscriber() -> None:
    topics = Topics("site1/facewire")
    subscriptions = [topics.embeddings_shared("classifiers"), topics.results_all(), topics.node_status_all()]
    published = [topics.embeddings("cam-1"), topics.results("cam-1"), topics.node_status("cam-1")]
    for topic in published:
        assert any(matches(sub, topic) for sub in subscriptions), topic
    assert not matches(topics.results_all(), topics.embeddings("cam-1"))
    assert matches("a/#", "a/b/c") and not matches("a/+", "a/b/c")


def test_node_of_parses_only_its_kind() -> None:
    topics = Topics("x/y")
    assert topics.node_of("x/y/embeddings/cam", "embeddings") == "cam"
    assert topics.node_of("x/y/results/cam", "embeddings") is None
    assert topics.node_of("x/y/embeddings/cam/extra", "embeddings") is None


def test_precedence_is_defaults_then_toml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "facewire.toml"
    config.write_text('[classifier]\nthreshold = 0.5\ntop_k = 3\n[edge]\nnode_id = "from-toml"\n')
    monkeypatch.setenv("FACEWIRE_CLASSIFIER__TOP_K", "7")
    settings = load_settings(config, {"edge": {"node_id": "from-flag", "max_fps": None}})
    assert settings.classifier.threshold == 0.5  # TOML over default
    assert settings.classifier.top_k == 7  # env over TOML
    assert settings.edge.node_id == "from-flag"  # flag over TOML
    assert settings.edge.max_fps == 0.0  # a flag not given changes nothing


def test_unknown_keys_and_out_of_range_values_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[classifier]\nthreshhold = 0.5\n")
    with pytest.raises(ConfigError, match="threshhold"):
        load_settings(config)
    with pytest.raises(ConfigError, match="threshold"):
        load_settings(None, {"classifier": {"threshold": 7}})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_reference_lists_every_option_with_its_variable() -> None:
    rows = {key: env for key, env, _default, _text in reference_rows()}
    assert rows["classifier.threshold"] == "FACEWIRE_CLASSIFIER__THRESHOLD"
    assert rows["mqtt.url"] == "FACEWIRE_MQTT__URL"
    assert all(text for _k, _e, _d, text in reference_rows())

"""Topic names, the channel list and the AsyncAPI document made from it, and configuration precedence."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from facewire.asyncapi import document, render
from facewire.config import load_settings, reference_rows
from facewire.errors import ConfigError
from facewire.schema.catalog import MESSAGES
from facewire.topics import CHANNELS, Topics, matches

ASYNCAPI = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"
PARSERS = {"node_of", "command_account"}  # Topics methods that read a topic rather than build one


def built_topics(topics: Topics) -> dict[str, str]:
    """Every topic or subscription a Topics method builds, with 'x' for each argument."""
    found = {}
    for name, method in inspect.getmembers(topics, inspect.ismethod):
        if not name.startswith("_") and name not in PARSERS:
            names = inspect.signature(method).parameters
            found[name] = method(*[topics.ha_node_state("x") if n == "state_topic" else "x" for n in names])
    return found


def test_every_published_topic_has_a_subscriber() -> None:
    topics = Topics("site1/facewire")
    subscriptions = [topics.embeddings_shared("classifiers"), topics.results_all(), topics.node_status_all()]
    published = [topics.embeddings("cam-1"), topics.results("cam-1"), topics.node_status("cam-1")]
    for topic in published:
        assert any(matches(sub, topic) for sub in subscriptions), topic
    assert not matches(topics.results_all(), topics.embeddings("cam-1"))
    assert matches("a/#", "a/b/c") and not matches("a/+", "a/b/c")


def test_every_topic_belongs_to_exactly_one_channel() -> None:
    topics = Topics("site1/facewire")
    patterns = {channel.name: channel.pattern(topics.prefix) for channel in CHANNELS}
    for method, topic in built_topics(topics).items():
        plain = topic.split("/", 2)[2] if topic.startswith("$share/") else topic
        owners = [name for name, pattern in patterns.items() if matches(pattern, plain) or pattern == plain]
        assert len(owners) == 1, (method, topic, owners)


def test_every_channel_names_a_message_class_and_is_used() -> None:
    assert {channel.message for channel in CHANNELS} == set(MESSAGES)
    assert len({channel.name for channel in CHANNELS}) == len(CHANNELS)
    built = set(built_topics(Topics()).values())
    for channel in CHANNELS:
        assert any(matches(channel.pattern("facewire"), t.removeprefix("$share/x/")) for t in built), channel.name


def test_committed_asyncapi_document_matches_the_code() -> None:
    """Regenerate with: python -m facewire.asyncapi docs/asyncapi.yaml"""
    assert ASYNCAPI.read_text(encoding="utf-8") == render()
    parsed = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert parsed == document() and parsed["asyncapi"] == "3.0.0"
    assert {c["address"] for c in parsed["channels"].values()} == {f"facewire/{c.address}" for c in CHANNELS}
    for operation in parsed["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        assert channel in parsed["channels"] and operation["action"] in ("send", "receive")
    for message in parsed["components"]["messages"].values():
        assert message["payload"]["$ref"].rsplit("/", 1)[1] in parsed["components"]["schemas"]


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


def test_an_empty_share_group_is_a_plain_subscription_for_a_single_classifier() -> None:
    assert Topics().embeddings_shared("") == "facewire/embeddings/+"
    assert Topics().embeddings_shared("classifiers") == "$share/classifiers/facewire/embeddings/+"

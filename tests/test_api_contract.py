"""The API's contract and keys without processes: the committed OpenAPI document, key storage, scopes, rate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facewire.errors import ConfigError
from facewire_console.api.keys import ApiKey, KeyStore, RateLimiter, allows
from facewire_console.api.openapi import document
from harness.processes import ROOT


def test_committed_document_is_the_generated_one() -> None:
    """docs/openapi.json is `facewire api openapi` (the live tests compare the served one with it)."""
    assert json.loads((ROOT / "docs" / "openapi.json").read_text()) == document()


def test_document_is_openapi_31_with_every_route() -> None:
    from facewire_console.api.routes import api_routes

    spec = document()
    assert spec["openapi"] == "3.1.0"
    declared = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    served = {(route.path, method) for route in api_routes() for method in route.methods or () if method != "HEAD"}  # type: ignore[attr-defined]
    assert declared == served


def test_keys_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    secret = store.add("ha", "read", 60)
    assert len(secret) > 40 and secret not in (tmp_path / "keys.json").read_text()
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    found = store.lookup(secret)
    assert found is not None and (found.name, found.scope) == ("ha", "read")
    assert store.lookup(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.revoke("ha") and not store.revoke("ha")
    assert store.lookup(secret) is None
    renewed = store.add("ha", "admin", 60)  # a new key of the same name replaces the revoked one
    assert store.lookup(renewed) is not None and store.lookup(secret) is None
    with pytest.raises(ConfigError):
        store.add("no spaces", "read", 60)
    with pytest.raises(ConfigError):
        store.add("ok", "root", 60)


def test_scopes_are_ordered() -> None:
    assert allows("admin", "read") and allows("read", "recognize") and allows("recognize", "recognize")
    assert not allows("recognize", "read") and not allows("read", "admin")


def test_rate_limit_allows_the_burst_then_refuses() -> None:
    limiter, key = RateLimiter(), ApiKey("k", "read", 5, "x", 0.0)
    assert [limiter.retry_after(key) for _ in range(5)] == [0.0] * 5
    wait = limiter.retry_after(key)
    assert 0 < wait <= 12.0  # one request back every 60/5 s
    other = ApiKey("j", "read", 5, "y", 0.0)
    assert limiter.retry_after(other) == 0.0

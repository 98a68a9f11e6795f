"""Helpers of the REST API tests: a real ``facewire api serve`` process, its keys, and the live stack around it
(mosquitto, two classifier replicas with Colin_Powell and Tony_Blair enrolled, the API)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from classifier_service.gallery.client import GalleryClient
from facewire.config import MqttSettings
from facewire_console.broker import LocalBroker, free_port
from harness.processes import RunningClassifier, run_module, start_module
from tests.gallery_support import KNOWN, make_gallery, photos


class RunningApi:
    """A real ``python -m facewire_console api serve`` on a free loopback port."""

    def __init__(self, broker_url: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = {
            "FACEWIRE_MQTT__URL": broker_url,
            "FACEWIRE_WEB__DATA_DIR": str(workdir / "web-data"),
            "FACEWIRE_RECORDER__DATABASE": str(workdir / "results.sqlite"),
            "FACEWIRE_ALERTS__DATABASE": str(workdir / "alerts.sqlite"),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def log(self) -> Path:
        return self.workdir / "api.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_module("facewire_console", ["api", *args], self.env, timeout=60)

    def add_key(self, name: str, scope: str, per_minute: int = 6000) -> str:
        """A new key (the last line of ``facewire api add-key``)."""
        done = self.cli("add-key", name, "--scope", scope, "--per-minute", str(per_minute))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def start(self, timeout: float = 30.0) -> RunningApi:
        args = ["api", "serve", "--port", str(self.port)]
        self.process = start_module("facewire_console", args, self.env, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/openapi.json", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"facewire api exited:\n{self.log.read_text()}") from None
                time.sleep(0.2)
        raise TimeoutError(f"facewire api not up:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.terminate()
        return self.process.wait(30)

    def call(self, method: str, path: str, key: str | None, **kwargs: Any) -> requests.Response:
        headers = {"X-API-Key": key} if key else {}
        return requests.request(method, self.url + path, headers=headers, timeout=90, **kwargs)


def error_code(response: requests.Response) -> str:
    """The stable code of a JSON error answer."""
    assert response.headers["content-type"] == "application/json", response.text
    return str(response.json()["error"]["code"])


@dataclass
class Stack:
    broker: LocalBroker
    api: RunningApi
    replicas: list[RunningClassifier]
    keys: dict[str, str]  # scope -> key


def replica_people(url: str) -> dict[str, dict[str, int]]:
    """instance -> {person: count} as every replica reports it."""
    with GalleryClient(MqttSettings(url=url), actor="test") as client:
        events = client.gather({"op": "status"}, quiet=0.5, timeout=10)
    return {str(e["instance"]): dict(e.get("people_list") or {}) for e in events}


@pytest.fixture(scope="module", name="stack")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("api")
    broker = LocalBroker(work / "broker").start()
    gallery = make_gallery(work / "gallery", {p: photos(KNOWN / p)[:4] for p in ("Colin_Powell", "Tony_Blair")})
    replicas = []
    api = RunningApi(broker.url, work)
    try:
        for instance in ("a", "b"):
            (work / instance).mkdir()
            replicas.append(RunningClassifier(broker.url, gallery, work / instance, instance=instance).start())
        keys = {scope: api.add_key(f"k-{scope}", scope) for scope in ("recognize", "read", "admin")}
        api.start()
        wait_for_replicas(api, keys["read"], 2)
        yield Stack(broker, api, replicas, keys)
    finally:
        api.stop()
        for replica in replicas:
            replica.stop()
        broker.stop()


def wait_for_replicas(api: RunningApi, key: str, count: int) -> None:
    """Until the API has heard both replicas' retained status (a subjects call answers from all of them)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = api.call("GET", "/subjects", key)
        if answer.status_code == 200:
            return
        time.sleep(0.3)
    raise TimeoutError(f"the API never reached the classifiers:\n{api.log.read_text()}")

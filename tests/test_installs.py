"""The `facewire` command on the installs the docs describe, each in a fresh virtualenv.

- an edge node: `pip install ".[edge]"` (no FAISS, no dashboard): every command's --help, and the
  commands a camera node runs (`facewire tail`, `facewire extract`, `facewire enroll --camera`);
- the server image: exactly the extras docker/Dockerfile installs: `facewire nodes` and
  `facewire monitor --once --json` against a live stack (real mosquitto, the alert service).

The virtualenvs are built once per session from a copy of the sources (pip's cache keeps it short).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from facewire_console.broker import LocalBroker
from harness.processes import ROOT, SAMPLE, Collector, RunningClassifier, status_online

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first test builds a virtualenv

SOURCES = ["pyproject.toml", "README.md", "facewire", "facewire_console", "edge_agent", "classifier_service"]
SOURCES += ["alert_service"]
CLIP = SAMPLE / "short_hamilton_clip.mp4"

# Walks the `facewire` command tree inside the virtualenv and runs `--help` on every command and group.
HELP_WALK = """
import json, sys, click
from click.testing import CliRunner
from facewire_console.cli import main
failures, seen = [], []
def walk(command, path):
    result = CliRunner().invoke(main, [*path, "--help"])
    seen.append(" ".join(path))
    if result.exit_code != 0:
        failures.append({"command": " ".join(path), "output": result.output[-400:], "error": repr(result.exception)})
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            walk(command.get_command(ctx, name), [*path, name])
walk(main, [])
print(json.dumps({"seen": seen, "failures": failures}))
"""


def dockerfile_extras() -> str:
    """The extras the server image installs (docker/Dockerfile's build-server stage)."""
    found = re.search(r'pip install --prefer-binary "\.\[([\w,]+)\]"', (ROOT / "docker" / "Dockerfile").read_text())
    assert found, "docker/Dockerfile installs no '.[extras]' in build-server"
    return found.group(1)


def make_venv(folder: Path, extras: str) -> Path:
    """A fresh virtualenv with `pip install "SRC[extras]"` (a copy of this checkout's package)."""
    source = folder / "src"
    source.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[{extras}]"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip(f"package index not reachable: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


@pytest.fixture(scope="session")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("edge-install"), "edge")


@pytest.fixture(scope="session")
def server_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_venv(tmp_path_factory.mktemp("server-install"), dockerfile_extras())


def run(venv: Path, argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a console script of ``venv``; fail the test with its output unless it exits 0."""
    result = subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), **(env or {})},
        timeout=timeout,
    )
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-1500:]}"
    return result.stdout


def installed(venv: Path, module: str) -> bool:
    probe = [str(venv / "bin" / "python"), "-c", f"import importlib.util as u; print(u.find_spec('{module}'))"]
    return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip() != "None"


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    """Cache and state folders of a fresh machine."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_STATE_HOME": str(tmp_path / "state")}


def test_the_edge_install_has_no_faiss_and_no_dashboard(edge_venv: Path) -> None:
    assert not installed(edge_venv, "faiss") and not installed(edge_venv, "argon2")


def test_every_command_shows_its_help_on_an_edge_install(edge_venv: Path, tmp_path: Path) -> None:
    report = json.loads(run(edge_venv, ["python", "-c", HELP_WALK], tmp_path))
    assert not report["failures"], report["failures"]
    assert {"tail", "extract", "enroll", "web add-user", "classifier run", "deploy init"} <= set(report["seen"])
    for script in ("edge-agent", "classifier-service", "alert-service"):
        assert "Usage:" in run(edge_venv, [script, "--help"], tmp_path)


def test_a_server_command_on_an_edge_install_names_the_extra(edge_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(edge_venv / "bin" / "facewire"), "web", "add-user", "x", "--password-stdin"],
        input="secret-password\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1 and "pip install 'facewire[web]'" in result.stderr, result.stderr


def test_tail_extract_and_camera_enrolment_on_an_edge_install(
    edge_venv: Path, broker: LocalBroker, tmp_path: Path, state: dict[str, str]
) -> None:
    env = {**state, "FACEWIRE_MQTT__URL": broker.url}
    # extract: aligned crops of the sample clip
    out = tmp_path / "crops"
    run(edge_venv, ["facewire", "extract", str(CLIP), str(out), "--target-fps", "2"], tmp_path, env)
    assert list(out.glob("*/*.jpg")), "extract wrote no crops"
    # tail: the edge agent (same install) publishes the clip, tail decodes three embeddings
    tail = subprocess.Popen(
        [str(edge_venv / "bin" / "facewire"), "tail", "--json", "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
    )
    time.sleep(3)  # tail subscribed
    # tail leaves after 3; a consumer stays for the rest (with none, `--once` keeps the faces and exits 1)
    consumer = Collector(env["FACEWIRE_MQTT__URL"], ["facewire/embeddings/+"]).start()
    try:
        run(edge_venv, ["edge-agent", "run", "--source", str(CLIP), "--node-id", "pi", "--once"], tmp_path, env)
    finally:
        consumer.stop()
    lines, errors = tail.communicate(timeout=60)
    assert tail.returncode == 0, errors
    messages = [json.loads(line) for line in lines.splitlines()]
    assert len(messages) == 3 and all(m["node"] == "pi" for m in messages), lines


def test_camera_enrolment_from_an_edge_install_reaches_the_classifier(
    edge_venv: Path, broker: LocalBroker, tmp_path: Path, state: dict[str, str]
) -> None:
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    classifier = RunningClassifier(broker.url, gallery, tmp_path, instance="server").start()
    try:
        env = {**state, "FACEWIRE_MQTT__URL": broker.url}
        argv = ["facewire", "enroll", "Someone", "--camera", str(CLIP), "--frames", "3"]
        out = run(edge_venv, argv, tmp_path, env)
        assert "Someone" in out and "3 frames enrolled" in out, out
    finally:
        classifier.stop()


@pytest.fixture
def live_stack(server_venv: Path, broker: LocalBroker, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The alert service of the server install, connected to a real mosquitto, with one edge status."""
    env = {
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FACEWIRE_MQTT__URL": broker.url,
    }
    watcher = Collector(broker.url, ["facewire/services/+/+/status"]).start()
    log = (tmp_path / "alert-service.log").open("wb")
    service = subprocess.Popen(
        [str(server_venv / "bin" / "alert-service"), "run", "all", "--instance", "stack"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={"PATH": f"{server_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), **env},
    )
    try:
        online = watcher.wait_for(lambda topic: "/nodes/" in topic, 1, 90)
        assert online and status_online(online[-1][1]), (tmp_path / "alert-service.log").read_text()[-2000:]
        # an edge node (the server image has the edge agent too) leaves its retained status behind
        edge = ["edge-agent", "run", "--source", str(CLIP), "--node-id", "pi", "--once", "--skip-frames", "10"]
        consumer = Collector(broker.url, ["facewire/embeddings/+"]).start()  # no classifier in this stack
        try:
            run(server_venv, edge, tmp_path, env)
        finally:
            consumer.stop()
        yield env
    finally:
        watcher.stop()
        service.terminate()
        service.wait(timeout=60)
        log.close()


def test_nodes_and_monitor_on_the_server_install(server_venv: Path, live_stack: dict[str, str], tmp_path: Path) -> None:
    assert installed(server_venv, "faiss") and installed(server_venv, "argon2")
    nodes = json.loads(run(server_venv, ["facewire", "nodes", "--json"], tmp_path, live_stack))
    assert "pi" in json.dumps(nodes), nodes
    snapshot = json.loads(run(server_venv, ["facewire", "monitor", "--once", "--json"], tmp_path, live_stack))
    assert "pi" in json.dumps(snapshot), snapshot

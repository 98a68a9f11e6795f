"""Helpers of the dashboard tests: a real ``facewire web`` process and Debian's chromium driven by Playwright."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from facewire_console.broker import free_port
from harness.processes import ROOT, start_module

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "alice", "correct horse battery staple"


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Save the page as a small (256-colour) PNG: docs/img/web-NAME.png when FACEWIRE_WEB_SCREENSHOTS=1
    (to refresh the documentation), else a temporary file."""
    folder = ROOT / "docs" / "img" if os.environ.get("FACEWIRE_WEB_SCREENSHOTS") == "1" else tmp_path
    target = folder / f"web-{name}.png"
    with Image.open(io.BytesIO(page.screenshot(full_page=True))) as shot:
        shot.convert("RGB").quantize(256).save(target, optimize=True)
    return target


class RunningWeb:
    """A real ``python -m facewire_console web`` process on a free loopback port, with one account."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = {
            "FACEWIRE_WEB__USERS_FILE": str(workdir / "web-users.json"),
            "FACEWIRE_WEB__SECRET_FILE": str(workdir / "web-secret"),
            "FACEWIRE_WEB__DATA_DIR": str(workdir / "web-data"),
            "FACEWIRE_WEB__PORT": str(self.port),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "web.log"

    def start(self, timeout: float = 30.0) -> RunningWeb:
        created = subprocess.run(
            [sys.executable, "-m", "facewire_console", "web", "add-user", USER, "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            capture_output=True,
            env={**os.environ, **self.env},
            cwd=ROOT,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        self.process = start_module("facewire_console", ["web"], self.env, self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    raise RuntimeError(f"facewire web exited:\n{self.log.read_text()}") from None
                time.sleep(0.2)
        raise TimeoutError(f"facewire web not up:\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.terminate()
        return self.process.wait(30)


@contextmanager
def browser(tmp_path: Path) -> Iterator[Any]:
    """A fresh headless chromium (Debian's, never a downloaded one) as a Playwright browser context."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip, the web extra) not installed")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 680},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            context.close()


def log_in(page: Any, base: str, user: str = USER, password: str = PASSWORD) -> None:
    page.goto(base + "/")
    assert page.url.startswith(base + "/login"), page.url
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def console_errors(page: Any) -> list[str]:
    """Errors the page logs (a script failing, a Content-Security-Policy violation), collected as they come."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors

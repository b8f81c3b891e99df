"""Servers and a headless browser for tests/test_browser.py: a web app started as its own process group on a free
loopback port, and Debian's Chromium driven by Playwright (no browser download: `executable_path`).

Screenshots go to `outputs/browser/` (gitignored), or to the folder XSTILTS_BROWSER_SCREENSHOTS names (a CI job can
collect them from there).
"""

import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from components.settings import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: without the background-networking flags Chromium keeps opening connections that
# are refused, and looks up Google's hosts at every start. As root, Chromium's sandbox cannot start.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1600, "height": 1000}
SCREENSHOTS = Path(os.environ.get("XSTILTS_BROWSER_SCREENSHOTS") or PROJECT_ROOT / "outputs" / "browser")
SERVER_START_S = 90  # an MLflow server's start on 2 busy cores took 17-40 s here (imports, store migrations)
STOP_S = 5  # then SIGKILL (the servers hold nothing unwritten by then: the tests only read)
UI_TIMEOUT_MS = 30_000  # one page element to appear: the UI loads megabytes of JavaScript on a busy machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(command: list[str], ready_url: str, log: Path, cwd: Path | None = None,
           stop_signal: int = signal.SIGTERM, environment: dict[str, str] | None = None) -> Iterator[None]:
    """Runs a server `command` in its own process group until the block ends; the block starts once `ready_url`
    answers 200. Its output goes to `log`, whose end a start that fails or times out reports. The whole group gets
    `stop_signal`: an MLflow server runs uvicorn workers, optuna-dashboard a gunicorn worker, as child processes."""
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, **(environment or {})})
    try:
        wait_until_answering(process, ready_url, log)
        yield
    finally:
        stop_group(process, stop_signal)


def wait_until_answering(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited {process.returncode} before answering {url}:\n"
                               f"{log_tail(log)}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {SERVER_START_S} s:\n{log_tail(log)}")


def log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop_group(process: subprocess.Popen, stop_signal: int) -> None:
    """`stop_signal` to the server's process group, then SIGKILL to whatever of it is left after STOP_S or once the
    server's own process has ended."""
    try:
        os.killpg(process.pid, stop_signal)
        process.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return  # the group has ended already
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def launch_chromium(playwright):
    """Debian's Chromium, headless, in a new empty profile (Playwright's default for `launch`)."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test.sh installs it (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)


def screenshot(page, name: str) -> Path:
    """Saves what the page shows now as `<SCREENSHOTS>/<name>.png`."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

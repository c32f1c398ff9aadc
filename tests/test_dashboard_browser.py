"""`paretune dashboard` in a real browser: headless Chromium (Debian's) driven by Playwright.

Starts the console script on a free port against a synthetic store, waits for the Pareto chart,
counts the plotted front points in plotly's own data, clicks a point to open its trial, watches
a running study refresh itself, and saves a screenshot in the test's temporary directory (and
to docs/dashboard.png when ``PARETUNE_UPDATE_SCREENSHOT=1``, so a test run leaves the tree clean).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from synthetic_study import build_synthetic_study

pytestmark = pytest.mark.browser
optuna.logging.set_verbosity(optuna.logging.WARNING)

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
FRONT_JS = """() => {
  for (const g of document.querySelectorAll('.js-plotly-plot')) {
    const t = (g._fullData || []).find(t => t.name === 'Pareto front');
    if (t) return t._length;
  }
  return null;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_command(url: str, port: int) -> list[str]:
    script = Path(sys.executable).with_name("paretune")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "paretune.search.cli.app"]
    return [*base, "dashboard", "--storage", url, "--port", str(port)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip(
            f"{CHROMIUM} missing: install Debian's chromium (`make chromium`) to run the browser tests"
        )
    tmp = tmp_path_factory.mktemp("dash_browser")
    url = f"sqlite:///{tmp / 'store.db'}"
    alpha = build_synthetic_study(
        url, "lora-sweep", n_trials=150, n_steps=10, infeasible_fraction=0.1, seed=31, bulk=True
    )
    live = build_synthetic_study(
        url, "live", n_trials=24, n_steps=6, n_running=2, status="running", seed=32, bulk=True
    )
    port = free_port()
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        dashboard_command(url, port),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"dashboard did not start: {(tmp / 'server.log').read_text()}")
            time.sleep(0.5)
        yield {
            "base": base,
            "url": url,
            "alpha": alpha,
            "live": live,
            "tmp": tmp,
            "port": port,
            "proc": proc,
        }
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function(
        FRONT_JS.replace("return t._length", "return t._length > 0 ? t._length : null"),
        timeout=60_000,
    )
    return page


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port``, from /proc/net/tcp{,6} (Linux)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                out.add(address)
    return out


def test_server_binds_localhost_only(server):
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", server["port"])) == 0
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read the listening address from")
    assert listening_addresses(server["port"]) == {"0100007F"}  # 127.0.0.1, nothing else


def test_pareto_chart_shows_the_front(server, browser):
    info = server["alpha"]
    page = open_page(browser, f"{server['base']}/study?study=lora-sweep")
    try:
        assert page.evaluate(FRONT_JS) == len(info.pareto_numbers)
        body = page.inner_text("body")
        assert "Pareto size" in body and "lora-sweep" in body
        assert f"{len(info.pareto_numbers)} on the Pareto front" in body
        time.sleep(1.5)  # let the fonts and the chart settle for the picture
        shot = server["tmp"] / "dashboard.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
        docs = ROOT / "docs"
        if os.environ.get("PARETUNE_UPDATE_SCREENSHOT") == "1" and docs.is_dir():
            shutil.copyfile(shot, docs / "dashboard.png")
    finally:
        page.close()


def test_click_on_a_front_point_opens_the_trial(server, browser):
    page = open_page(browser, f"{server['base']}/study?study=lora-sweep")
    try:
        target = page.evaluate(
            """() => {
              for (const g of document.querySelectorAll('.js-plotly-plot')) {
                const i = (g._fullData || []).findIndex(t => t.name === 'Pareto front');
                if (i < 0) continue;
                const trace = g.querySelectorAll('.scatterlayer .trace')[i];
                const point = trace.querySelectorAll('.point')[0];
                const r = point.getBoundingClientRect();
                return {x: r.x + r.width / 2, y: r.y + r.height / 2, n: g._fullData[i].customdata[0]};
              }
              return null;
            }"""
        )
        assert target is not None
        page.mouse.move(target["x"], target["y"])
        page.mouse.click(target["x"], target["y"])
        page.get_by_text(f"Trial {int(target['n'])}: COMPLETE").wait_for(timeout=30_000)
        assert f"trial={int(target['n'])}" in page.url
        page.get_by_text(f"paretune export lora-sweep --trial {int(target['n'])}").wait_for(
            timeout=15_000
        )
    finally:
        page.close()


def test_running_study_refreshes_itself(server, browser):
    info = server["live"]
    page = open_page(browser, f"{server['base']}/study?study=live")
    try:
        assert page.evaluate(FRONT_JS) == len(info.pareto_numbers)
        page.get_by_text("2 trials running").wait_for(timeout=10_000)
        page.evaluate("() => { window.__not_reloaded = true; }")
        # the driver finishes a trial that dominates every other one
        study = optuna.load_study(study_name="live", storage=server["url"])
        best = max(t.values[0] for t in study.trials if t.values)
        smallest = min(t.values[1] for t in study.trials if t.values)
        study.add_trial(
            optuna.trial.create_trial(
                values=[best + 0.01, smallest - 1],
                params={"learning_rate": 1e-3},
                distributions={
                    "learning_rate": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)
                },
                user_attrs={"summary": "lora r4 on L5 query", "trainable_params": smallest - 1},
            )
        )
        page.wait_for_function(
            FRONT_JS.replace("return t._length", "return t._length === 1 ? 1 : null"),
            timeout=40_000,
        )
        assert page.evaluate(
            "() => window.__not_reloaded === true"
        )  # a partial refresh, not a reload
        assert "Trials (of 24)\n\n25" in page.inner_text("body")
    finally:
        page.close()

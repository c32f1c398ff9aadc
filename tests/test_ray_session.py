"""How paretune starts Ray: a local cluster keeps token authentication and prints no warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types

import pytest

from paretune.search.service import driver


def test_a_local_ray_starts_with_token_auth_and_no_warning(tmp_path):
    """Left unset, Ray turns token authentication on and says so on every start; paretune keeps
    the mode and drops the notice, so `paretune submit` opens without that line."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["HOME"] = str(tmp_path)  # the token Ray generates goes here, not to the user's home
    code = (
        "import ray\n"
        "from paretune.search.service.driver import ray_session\n"
        "with ray_session(None, 1):\n"
        "    print('answer', ray.get(ray.remote(lambda: 41 + 1).remote()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer 42" in done.stdout
    assert "Token authentication" not in done.stderr + done.stdout
    assert (tmp_path / ".ray" / "auth_token").is_file()  # Ray's token: authentication is on


@pytest.fixture
def fake_ray(monkeypatch):
    """``ray`` whose init logs what Ray's token set-up logs (no cluster starts)."""
    fake = types.ModuleType("ray")
    fake.is_initialized = lambda: False
    fake.shutdown = lambda: None

    def init(**kwargs):
        log = logging.getLogger(driver.TOKEN_LOGGER)
        log.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=...")
        log.warning("Token authentication is disabled for this Ray cluster. Anyone with ...")

    fake.init = init
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_only_the_default_on_notice_is_dropped_and_only_while_ray_starts(fake_ray, caplog):
    with caplog.at_level(logging.WARNING), driver.ray_session(None, 2):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith(driver.TOKEN_NOTICE) for m in messages)
    assert any("authentication is disabled" in m for m in messages)  # a real warning still shows
    caplog.clear()
    logging.getLogger(driver.TOKEN_LOGGER).warning(driver.TOKEN_NOTICE)
    assert [r.getMessage() for r in caplog.records] == [driver.TOKEN_NOTICE]

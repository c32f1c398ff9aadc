"""The docker-compose deployment agrees with paretune's own defaults (no container engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from paretune.search.store.urls import resolve_storage

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_of(service: dict) -> dict:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def published(service: dict) -> set[int]:
    return {
        int(str(p).split(":")[-2] if str(p).count(":") >= 1 else p)
        for p in service.get("ports", [])
    }


def test_services_ports_and_volumes():
    c = compose()
    assert set(c["services"]) == {"postgres", "ray-head", "ray-worker", "dashboard"}
    assert "pgdata" in c["volumes"]
    assert any(v.startswith("pgdata:") for v in c["services"]["postgres"]["volumes"])
    assert 8265 in published(c["services"]["ray-head"])  # Ray dashboard: job submission
    assert 8501 in published(c["services"]["dashboard"])
    assert 5432 in published(c["services"]["postgres"])
    assert "--head" in c["services"]["ray-head"]["command"]
    assert "--dashboard-port=8265" in c["services"]["ray-head"]["command"]
    assert "ray-head:6379" in c["services"]["ray-worker"]["command"]
    # ports publish on loopback only unless an operator changes it
    for name, service in c["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_storage_and_ray_variables_match_paretune_defaults():
    from paretune.search.cli import dashboard as cli_dashboard

    c = compose()
    pg = env_of(c["services"]["postgres"])
    for name in ("ray-head", "ray-worker", "dashboard"):
        env = env_of(c["services"][name])
        url = resolve_storage(env["PARETUNE_STORAGE"])
        assert url.startswith("postgresql+psycopg://")
        user, password, host, port, db = re.match(
            r".*://([^:]+):([^@]+)@([^:/]+):(\d+)/(\w+)$", url
        ).groups()
        assert (user, password, db) == (
            pg["POSTGRES_USER"],
            pg["POSTGRES_PASSWORD"],
            pg["POSTGRES_DB"],
        )
        assert host == "postgres" and port == "5432"
        assert env["RAY_ADDRESS"].startswith("ray-head:")
    command = c["services"]["dashboard"]["command"]
    assert command.startswith("paretune dashboard")
    assert "--port 8501" in command
    source = Path(cli_dashboard.__file__).read_text()
    assert "8501" in source  # the CLI's default port is the one compose publishes


def test_dockerfile_installs_paretune_and_every_package():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    for folder in ("spaces", "trainers", "kernels", "search", "dashboard"):
        assert f"COPY {folder} {folder}" in text
    assert 'pip install ".[gp]"' in text
    assert "ARG TORCH_INDEX" in text
    assert (ROOT / "docker-compose.yml").read_text().count("dockerfile: docker/Dockerfile") == 1

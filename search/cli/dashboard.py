"""``paretune dashboard``: serve the Streamlit dashboard on a study store.

The app runs in a ``streamlit run`` subprocess; the storage URL travels in the environment
(``PARETUNE_STORAGE``), never on a command line where ``ps`` would show its password. The server
binds 127.0.0.1 unless ``--host`` says otherwise, runs headless and sends no usage statistics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer

from paretune.search.store.urls import ENV_STORAGE, mask_url, resolve_storage

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def app_path() -> Path:
    """The dashboard's entry script, inside the installed ``paretune.dashboard`` package."""
    import paretune.dashboard  # noqa: PLC0415 - imports nothing heavy

    return Path(paretune.dashboard.__file__).with_name("app.py")


def streamlit_command(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def streamlit_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_STORAGE] = url
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    env["STREAMLIT_SERVER_HEADLESS"] = "true"
    return env


def serve(storage: str | None, host: str, port: int) -> int:
    """Run the dashboard until interrupted; returns the server's exit status."""
    url = resolve_storage(storage)  # a malformed URL stops here with one line
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + os.path.abspath(url[len("sqlite:///") :])
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    typer.echo(f"paretune dashboard on http://{shown}:{port}  (storage {mask_url(url)}, read-only)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            f"warning: listening on {host}: anyone who can reach this address can read the studies",
            err=True,
        )
    proc = subprocess.Popen(streamlit_command(host, port), env=streamlit_env(url))

    def forward(signum: int, _frame: object) -> None:  # a stopped CLI stops its server too
        proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.terminate()


def register(app: typer.Typer) -> None:
    """Add ``paretune dashboard`` to ``app``."""

    @app.command("dashboard")
    def dashboard(
        storage: Optional[str] = typer.Option(
            None,
            "--storage",
            help=f"study store URL (default ${ENV_STORAGE}, else sqlite:///paretune.db)",
        ),
        host: str = typer.Option(
            DEFAULT_HOST, "--host", help="address to bind; 0.0.0.0 exposes it to the network"
        ),
        port: int = typer.Option(DEFAULT_PORT, "--port", min=1, max=65535, help="port to serve on"),
    ) -> None:
        """Serve the web dashboard (Streamlit) on a study store, read-only."""
        code = serve(storage, host, port)
        if code not in (0, -signal.SIGINT, -signal.SIGTERM, 130):
            raise typer.Exit(code)

"""A real ``mlflow server`` for tests, and a TCP relay in front of it that can be cut to lose the server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

# An MLflow server creates its SQLite schema and imports its app in a worker process: ~15 s on an idle
# machine, much longer on a loaded CI runner.
STARTUP_TIMEOUT_S = 240


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until ``url/health`` answers; fail with the server's output if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} did not answer within {timeout} s")


def start_server(folder: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on a free loopback port: SQLite backend and proxied artifacts in ``folder``.

    Returns:
        The process (leader of its own process group) and the server URL.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{(folder / 'mlflow.db').as_posix()}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        *extra,
    ]
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")} | (env or {})
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - the server writes to it until it is stopped
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process)
    except RuntimeError:
        stop_group(process)
        raise
    return process, url


def stop_group(process: subprocess.Popen) -> None:
    """Kill a server and every worker in its process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


class Relay:
    """A TCP relay ``127.0.0.1:port`` -> ``target_port``; :meth:`cut` drops every connection and the listener.

    Losing a server mid-run without restarting MLflow (which takes many seconds): cut the relay, then
    :meth:`open` it again on the same port.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        sockets, self._sockets = [self._listener, *self._sockets], []
        self._listener = None
        for sock in sockets:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

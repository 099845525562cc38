"""Issue 16: ``clinfuse ui`` stops its whole process tree on SIGTERM and warns before binding beyond loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

import clinfuse.tracking as tracking


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    """Whether a new server could listen on ``port`` (as servers do, ignoring closed connections' TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


@pytest.mark.slow
def test_sigterm_stops_the_ui_and_every_worker_and_frees_the_port(tracking_uri: str) -> None:
    """SIGTERM becomes KeyboardInterrupt in ``launch_ui``, the same path as Ctrl-C (SIGINT)."""
    port = _free_port()
    command = [sys.executable, "-m", "clinfuse", "ui", "--port", str(port), "--tracking-uri", tracking_uri]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, "clinfuse ui exited before serving"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard never answered"
                time.sleep(0.3)
        tree = psutil.Process(process.pid).children(recursive=True)
        assert tree, "the MLflow server runs as a child of clinfuse ui"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert [p.pid for p in alive] == []
        assert _port_is_free(port)
    finally:
        if process.poll() is None:
            process.kill()
        for child in psutil.Process().children(recursive=True):
            if child.pid != process.pid and str(port) in " ".join(child.cmdline()):
                child.kill()


def test_ui_binds_loopback_by_default_and_warns_for_any_other_address(
    monkeypatch: pytest.MonkeyPatch, cli, tmp_path
) -> None:
    calls = []
    monkeypatch.setattr(tracking, "launch_ui", lambda uri, host, port: calls.append((host, port)))
    monkeypatch.chdir(tmp_path)
    code, out = cli(["ui", "--port", "5123"])
    assert (code, calls, out) == (0, [("127.0.0.1", 5123)], "")
    code, out = cli(["ui", "--host", "127.0.0.2"])
    assert (code, calls[-1], out) == (0, ("127.0.0.2", 5000), "")
    code, out = cli(["ui", "--host", "0.0.0.0", "--port", "5124"])
    assert code == 0 and calls[-1] == ("0.0.0.0", 5124)
    (line,) = out.strip().splitlines()
    assert line.startswith("warning: the dashboard on 0.0.0.0:5124 is reachable from other machines and has NO auth")
    assert "--app-name basic-auth" in line

"""`make run`'s start-up words: a taken port is one line naming the port and the variable to set; the
banner names the studio's URL and how to sign in."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from backend import devstack
from tests.support.net import free_port


def test_a_taken_port_is_one_line_naming_it_and_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        monkeypatch.setenv("API_PORT", str(taken))
        ports = (devstack.Port("the API", "API_PORT", 8000), devstack.Port("the UI", "UI_PORT", free_port()))
        assert devstack.taken_lines(ports) == [
            f"make run: port {taken} (the API) is already in use: stop what holds it, "
            "or run with API_PORT=<a free port>."
        ]


def test_check_exits_2_with_no_traceback_when_a_port_is_taken() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env = {"API_PORT": str(held.getsockname()[1]), "PATH": "/usr/bin:/bin"}
        for name in ("COMFY_TEXT_PORT", "COMFY_SKETCH_PORT", "COMFY_SANDBOX_PORT", "UI_PORT"):
            env[name] = str(free_port())
        done = subprocess.run(
            [sys.executable, "-m", "backend.devstack", "check"], env=env, capture_output=True, text=True
        )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "API_PORT=" in done.stderr and "Traceback" not in done.stderr


def test_a_port_a_stopped_server_left_in_time_wait_is_free_again() -> None:
    """`make run` right after Ctrl-C: the old server's closed connections linger in TIME_WAIT, which a
    server binding with SO_REUSEADDR (all of ours) ignores, so the check must too."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert devstack.is_taken(port)  # listening
    accepted.close()  # the server closes first: its end waits in TIME_WAIT
    client.close()
    listener.close()
    with socket.socket() as plain:  # without SO_REUSEADDR the port still looks held
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    assert not devstack.is_taken(port)


def test_the_banner_says_where_the_studio_is_and_how_to_sign_in() -> None:
    text = devstack.banner_text(8501, "studio-demo-token")
    assert "http://127.0.0.1:8501" in text and "studio-demo-token" in text
    assert "no demo designer" in devstack.banner_text(8501, "")

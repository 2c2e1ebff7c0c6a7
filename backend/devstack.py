"""`make run`'s two words to a person: a port already taken, said in one line before anything starts,
and one banner once the whole stack answers (the studio's URL and how to sign in).

    python -m backend.devstack check     # exit 2 with one line per taken port
    python -m backend.devstack banner    # wait for the API and the UI, print the banner, wait quietly

The ports are the Procfile's, each overridable by the variable the line names.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import httpx

READY_TIMEOUT_S = 180.0
POLL_S = 0.5
SETTLE_S = 2.0  # the API's other workers finish their start-up lines first: the banner ends the start-up


@dataclass(frozen=True)
class Port:
    what: str
    variable: str
    default: int

    @property
    def number(self) -> int:
        return int(os.environ.get(self.variable) or self.default)


PORTS = (
    Port("the text ComfyUI emulator", "COMFY_TEXT_PORT", 8188),
    Port("the sketch ComfyUI emulator", "COMFY_SKETCH_PORT", 8189),
    Port("the template sandbox emulator", "COMFY_SANDBOX_PORT", 8190),
    Port("the API", "API_PORT", 8000),
    Port("the studio (Streamlit)", "UI_PORT", 8501),
)


def is_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on the port. SO_REUSEADDR, as every server of the stack binds: the
    connections a stopped stack leaves in TIME_WAIT for a minute do not hold the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def taken_lines(ports: tuple[Port, ...] = PORTS) -> list[str]:
    return [
        f"make run: port {p.number} ({p.what}) is already in use: stop what holds it, "
        f"or run with {p.variable}=<a free port>."
        for p in ports
        if is_taken(p.number)
    ]


def banner_text(ui_port: int, token: str) -> str:
    sign_in = (
        f"Sign in with the demo token: {token}"
        if token
        else "Sign in with your designer token (DEMO_DESIGNER_TOKEN is empty: no demo designer)."
    )
    rule = "─" * 64
    lines = [f"Interior Studio is ready: http://127.0.0.1:{ui_port}", sign_in, "Ctrl-C stops everything."]
    return "\n".join(["", rule, *(f"  {line}" for line in lines), rule, ""])


def wait_ready(urls: list[str], timeout_s: float = READY_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    with httpx.Client(timeout=2.0) as client:
        while pending and time.monotonic() < deadline:
            try:
                if client.get(pending[0]).status_code < 500:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(POLL_S)
    return not pending


def _quiet_exit(_signum: int, _frame: object) -> None:
    sys.exit(0)


def banner() -> int:
    signal.signal(signal.SIGINT, _quiet_exit)
    signal.signal(signal.SIGTERM, _quiet_exit)
    api = int(os.environ.get("API_PORT") or 8000)
    ui = int(os.environ.get("UI_PORT") or 8501)
    urls = [f"http://127.0.0.1:{api}/healthz", f"http://127.0.0.1:{ui}/_stcore/health"]
    if not wait_ready(urls):
        sys.stderr.write("make run: the stack did not answer in time; see the lines above.\n")
        return 1
    time.sleep(SETTLE_S)
    token = os.environ.get("DEMO_DESIGNER_TOKEN", "studio-demo-token")
    sys.stdout.write(banner_text(ui, token))
    sys.stdout.flush()
    while True:  # honcho stops the stack when a process ends: wait here until Ctrl-C
        signal.pause()


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        lines = taken_lines()
        for line in lines:
            sys.stderr.write(line + "\n")
        return 2 if lines else 0
    if argv[:1] == ["banner"]:
        return banner()
    sys.stderr.write("usage: python -m backend.devstack check|banner\n")
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

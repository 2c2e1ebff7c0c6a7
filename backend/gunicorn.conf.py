"""gunicorn settings, all from Settings.

`gunicorn -c backend/gunicorn.conf.py 'backend.main:app_factory()'`
"""

import ctypes
import os
import signal
import sys
from typing import Any

from backend.config import get_settings

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_settings = get_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "uvicorn_worker.UvicornWorker"
timeout = 60
graceful_timeout = 30  # SIGTERM: in-flight requests get this long to finish
keepalive = 5
# The load balancer's X-Forwarded-Proto/For are believed from these peers only (HSTS over TLS, client IPs).
forwarded_allow_ips = _settings.forwarded_trusted_ips
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()


def post_fork(server: Any, worker: Any) -> None:
    """A worker dies with its master. Killed with SIGKILL, a master cannot stop its uvicorn workers
    (they never check their parent) and an orphan would go on serving on the inherited socket: the
    kernel sends each worker SIGTERM (its graceful stop) when its master dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        server.log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != worker.ppid:  # the master died before prctl
        os._exit(1)

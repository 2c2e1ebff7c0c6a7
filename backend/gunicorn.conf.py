"""gunicorn settings, all from Settings.

`gunicorn -c backend/gunicorn.conf.py 'backend.main:app_factory()'`
"""

from backend.config import get_settings

_settings = get_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
worker_class = "uvicorn_worker.UvicornWorker"
timeout = 60
graceful_timeout = 30  # SIGTERM: in-flight requests get this long to finish
keepalive = 5
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()

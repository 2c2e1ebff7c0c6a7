"""`python -m mlserver.sagemaker --port 8080 --comfy-url http://127.0.0.1:8188`: the SageMaker adapter.

Every flag falls back to its environment variable (COMFY_URL, ADAPTER_HOST, ADAPTER_PORT, WARMUP=on|off,
WARMUP_CHECKPOINT, INVOCATION_TIMEOUT_S, DRAIN_GRACE_S), then to the default of settings.py.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mlserver.sagemaker.server import serve
from mlserver.sagemaker.settings import AdapterSettings


def parse_args(argv: list[str] | None = None) -> AdapterSettings:
    p = argparse.ArgumentParser(prog="python -m mlserver.sagemaker", description=__doc__.split("\n\n")[0])
    p.add_argument("--comfy-url", help="the local ComfyUI (COMFY_URL)")
    p.add_argument("--host", dest="adapter_host", help="address to bind (ADAPTER_HOST, default 0.0.0.0)")
    p.add_argument("--port", dest="adapter_port", type=int, help="port (ADAPTER_PORT, default 8080)")
    p.add_argument("--warmup", choices=["on", "off"], help="warm-up render before /ping is 200 (WARMUP)")
    p.add_argument("--warmup-checkpoint", help="checkpoint of the warm-up render (WARMUP_CHECKPOINT)")
    p.add_argument("--invocation-timeout-s", type=float, help="per job (INVOCATION_TIMEOUT_S)")
    p.add_argument("--drain-grace-s", type=float, help="after SIGTERM (DRAIN_GRACE_S)")
    given: dict[str, Any] = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    return AdapterSettings(**given)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per /ping otherwise
    serve(parse_args(argv))


if __name__ == "__main__":
    main()

"""Locust users for bench/throughput.py when wrk is not installed (same requests as bench/wrk/jobs.lua).

BENCH_MODE post | get | healthz, BENCH_TOKEN the designer token, BENCH_IDS a file of job ids (get).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from locust import task
from locust.contrib.fasthttp import FastHttpUser

MODE = os.environ.get("BENCH_MODE", "healthz")
HEADERS = {"Authorization": f"Bearer {os.environ.get('BENCH_TOKEN', '')}"}
IDS = Path(os.environ["BENCH_IDS"]).read_text().split() if os.environ.get("BENCH_IDS") else []
BODY = {
    "prompt": "sunlit living room, rattan chairs, teak floor",
    "style": "none",
    "steps": 10,
    "width": 512,
    "height": 512,
}


class ApiUser(FastHttpUser):
    @task
    def one_request(self) -> None:
        if MODE == "post":
            self.client.post("/api/jobs", json=BODY, headers=HEADERS)
        elif MODE == "get":
            self.client.get(f"/api/jobs/{random.choice(IDS)}", headers=HEADERS, name="/api/jobs/{id}")
        else:
            self.client.get("/healthz")

"""Figure 8: the time the SageMaker async path adds to one job, against the direct path.

moto (S3, SNS, SQS and the SageMaker control plane) on loopback, the tests' SageMaker-async stand-in
(`tests/support/sagemaker_async.py`: InvokeEndpointAsync, then input from S3, the adapter, output to S3
and the SNS → SQS notification), the real adapter (`python -m mlserver.sagemaker`) in front of one
emulator (55 ms a step), and two backends on that emulator: one with `DISPATCH_ROUTING=comfy_only`
(the direct path), one with `sagemaker_only`. Jobs run one at a time, alternating between the two, so
both see the same machine at the same moment; the added time of pair i is SageMaker time i minus
direct time i, each from POST to the image in hand. moto is not AWS: the figure is what our own code
adds (S3 round trips, the invocation, the notification poll, decoding the results), not SageMaker's
queueing or cold starts, which are minutes (README, "Scaling out").
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.clients import Timing, api_client, api_render, job_body
from bench.report import Figure, ms, p50_p99
from bench.sizes import Sizes
from tests.support import harness
from tests.support.db import fresh_database

STEP_MS = 55.0


async def _pairs(sm_url: str, direct_url: str, jobs: int, steps: int) -> list[tuple[Timing, Timing]]:
    body = job_body(steps=steps)
    pairs: list[tuple[Timing, Timing]] = []
    async with (
        api_client(sm_url, harness.PRODUCTION_TOKEN) as sm,
        api_client(direct_url, harness.PRODUCTION_TOKEN) as d,
    ):
        await api_render(sm, body, progress=False)  # warm-up: first request of each worker, first invocation
        await api_render(d, body)
        for i in range(jobs):
            if i % 2:  # alternate which goes first, so neither always follows the other
                via_sm = await api_render(sm, body, progress=False)
                direct = await api_render(d, body)
            else:
                direct = await api_render(d, body)
                via_sm = await api_render(sm, body, progress=False)
            pairs.append((via_sm, direct))
    return pairs


def measure(workdir: Path, db: str, sizes: Sizes) -> list[tuple[Timing, Timing]]:
    from tests.support.aws import CREDENTIALS, REGION, serve_moto
    from tests.support.sagemaker_adapter import start_adapter
    from tests.support.sagemaker_async import SageMakerAsyncStandIn, create_overflow_endpoint

    with (
        serve_moto() as moto,
        fresh_database(db, workdir) as sm_db,
        fresh_database(db, workdir) as direct_db,
        harness.process_stack(workdir) as s,
    ):
        moto_url = moto.endpoint_url
        endpoint = create_overflow_endpoint(moto_url)
        emu = s.emulator(STEP_MS)
        s.wait_emulators()
        adapter = start_adapter(workdir / "adapter", emu.url, extra_env={"WARMUP": "off"})
        standin = SageMakerAsyncStandIn(moto_url, adapter.url).start()
        try:
            # Settings as the stack sets them (the test-only AWS endpoints aside); AWS credentials for moto.
            sm_env = harness.production_env(
                sm_db,
                workdir,
                "",
                dispatch_routing="sagemaker_only",
                sagemaker_endpoint_name=endpoint.endpoint_name,
                sagemaker_bucket=endpoint.bucket,
                sagemaker_notify_queue_url=endpoint.queue_url,
                sagemaker_region=REGION,
                aws_endpoint_url=moto_url,
                sagemaker_runtime_endpoint_url=standin.url,
            )
            sm_env |= {k.upper(): v for k, v in CREDENTIALS.items()}
            direct_env = harness.production_env(
                direct_db, workdir, harness.emulator_address(emu), dispatch_routing="comfy_only"
            )
            s.prestart(sm_env)
            s.prestart(direct_env)
            sm_api, direct_api = s.api(sm_env), s.api(direct_env)
            s.dispatcher(sm_env)
            s.dispatcher(direct_env)
            return asyncio.run(
                _pairs(sm_api.url, direct_api.url, sizes.sagemaker_jobs, sizes.sagemaker_steps)
            )
        finally:
            standin.stop()
            adapter.kill()


def figures(pairs: list[tuple[Timing, Timing]], db: str, steps: int) -> list[Figure]:
    added = p50_p99([sm.total_s - d.total_s for sm, d in pairs])
    sm_total = p50_p99([sm.total_s for sm, _ in pairs])
    direct_total = p50_p99([d.total_s for _, d in pairs])
    return [
        Figure(
            key="sagemaker.added",
            title=f"8. SageMaker path (moto) added time, {len(pairs)} jobs x {steps} steps ({db})",
            measured=f"p50 {ms(added['p50'])}, p99 {ms(added['p99'])}",
            baseline=f"direct path p50 {ms(direct_total['p50'])}, p99 {ms(direct_total['p99'])}",
            target="none (informative)",
            passed=None,
            values={
                "added_s": added,
                "sagemaker_total_s": sm_total,
                "direct_total_s": direct_total,
                "db": db,
            },
        )
    ]


def run(workdir: Path, db: str, sizes: Sizes) -> list[Figure]:
    return figures(measure(workdir, db, sizes), db, sizes.sagemaker_steps)

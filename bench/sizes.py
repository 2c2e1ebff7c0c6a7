"""How big each benchmark is: the issue's sizes (`FULL`, `make bench`) or tiny ones (`QUICK`, the test)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    latency_jobs: int  # jobs through the API, and as many straight to ComfyUI
    latency_steps: int  # sampler steps per job (10 x 55 ms: 50 pairs take about a minute)
    idle_backlog: int  # prompts queued for one ComfyUI instance
    idle_steps: int
    idle_no_prequeue: bool  # also measure the gap with COMFY_PREQUEUE=0 (informative)
    throughput_s: int  # seconds per load-generator run
    throughput_connections: int
    claim_backlog: int  # queued jobs the dispatchers claim from
    claim_dispatchers: tuple[int, ...]
    claim_s: float  # a run stops claiming after this long (or when the backlog is empty)
    claim_slots: int  # free slots per dispatcher: jobs one claim may take (1 is also run, informative)
    lora_jobs: int  # mixed backlog (Indochine, Minimalist, none) on two instances
    lora_steps: int
    memory_jobs: int  # jobs through API and dispatcher before memory is read
    memory_mark: int  # jobs done when the reference reading is taken
    sagemaker_jobs: int  # jobs through the SageMaker path (moto), and as many direct
    sagemaker_steps: int
    template_runs: int = 200  # validations of the generated 300-node template
    template_job_requests: int = 300  # POST /api/jobs of each body: legacy, built-in template, custom one
    product_jobs: int = 10  # product renders (3 images, 3 passes, x4 upscale) one at a time
    redesign_jobs: int = 10  # renders of each photo template (restyle, stage, edit) one at a time


FULL = Sizes(
    latency_jobs=50,
    latency_steps=10,
    idle_backlog=100,
    idle_steps=4,
    idle_no_prequeue=True,
    throughput_s=10,
    throughput_connections=32,
    claim_backlog=10_000,
    claim_dispatchers=(1, 2, 4),
    claim_s=10.0,
    claim_slots=8,
    lora_jobs=90,
    lora_steps=4,
    memory_jobs=10_000,
    memory_mark=1_000,
    sagemaker_jobs=20,
    sagemaker_steps=10,
)

QUICK = Sizes(
    latency_jobs=3,
    latency_steps=2,
    idle_backlog=5,
    idle_steps=1,
    idle_no_prequeue=False,
    throughput_s=1,
    throughput_connections=4,
    claim_backlog=60,
    claim_dispatchers=(1, 2),
    claim_s=30.0,
    claim_slots=4,
    lora_jobs=6,
    lora_steps=1,
    memory_jobs=40,
    memory_mark=10,
    sagemaker_jobs=2,
    sagemaker_steps=2,
    template_runs=5,
    template_job_requests=5,
    product_jobs=2,
    redesign_jobs=2,
)

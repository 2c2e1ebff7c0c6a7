"""`python -m bench.naive_dispatcher`: the production dispatcher without LoRA affinity, for figure 5's
baseline. Its executors never name a preferred LoRA, so every claim takes the head of the queue."""

from __future__ import annotations

import asyncio

from backend.config import get_settings
from backend.dispatcher import serve
from backend.executors.base import Executor
from backend.executors.comfy import ComfyExecutor
from backend.job_context import JobGateway
from backend.logs import configure_logging


class HeadOfQueueExecutor(ComfyExecutor):
    """A ComfyUI executor that ignores the LoRA it has loaded when it asks for the next job."""

    def preferred_lora(self) -> str | None:
        return None


def head_of_queue_executors(ctx: JobGateway) -> list[Executor]:
    return [HeadOfQueueExecutor(ctx, instance) for instance in ctx.settings.comfy_instances]


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(serve(settings, head_of_queue_executors))


if __name__ == "__main__":
    main()

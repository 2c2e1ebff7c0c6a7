"""`python -m bench.naive_dispatcher`: the production dispatcher without LoRA affinity, for figure 5's
baseline. Its executors never name a preferred LoRA, so every claim takes the head of the queue."""

from __future__ import annotations

import asyncio
import signal

from backend.config import Settings, get_settings
from backend.db import make_engine, make_sessionmaker
from backend.dispatcher import Dispatcher
from backend.executors.comfy import ComfyExecutor
from backend.logs import configure_logging
from backend.storage import make_storage
from loras.manifest import load_manifest


class HeadOfQueueExecutor(ComfyExecutor):
    """A ComfyUI executor that ignores the LoRA it has loaded when it asks for the next job."""

    def preferred_lora(self) -> str | None:
        return None


async def serve(settings: Settings) -> None:
    engine = make_engine(settings)
    dispatcher = Dispatcher(
        settings,
        make_sessionmaker(engine),
        make_storage(settings),
        load_manifest(settings.style_manifest),
        executors=[],
    )
    dispatcher.executors = [HeadOfQueueExecutor(dispatcher.ctx, i) for i in settings.comfy_instances]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stop)
    try:
        await dispatcher.run()
    finally:
        await engine.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()

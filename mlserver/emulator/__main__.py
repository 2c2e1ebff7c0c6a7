"""`python -m mlserver.emulator --port 8188`: a ComfyUI 0.3.64 stand-in (no GPU, no weights)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from aiohttp import web

from mlserver.emulator.app import make_app
from mlserver.emulator.executor import Config, Emulator, Faults
from mlserver.emulator.folders import Folders
from mlserver.emulator.previews import PREVIEW_METHODS
from mlserver.emulator.registry import RecordError, read_record

logger = logging.getLogger("mlserver.emulator")
# Loaded unless --bare: ComfyUI 0.3.64's own classes and those of the node packs the ML host installs
# (recorded from real servers, see tests/data/object_info/README.md), so every class a template may use
# validates and runs here as there.
RECORDS = Path(__file__).resolve().parents[2] / "tests" / "data" / "object_info"
DEFAULT_RECORDS = (RECORDS / "comfyui-0.3.64.json", RECORDS / "packs.json")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mlserver.emulator", description=__doc__)
    p.add_argument("--listen", default="127.0.0.1", help="address to bind (ComfyUI's flag)")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--base-directory", type=Path, help="root for models/, input/, output/, temp/")
    p.add_argument("--output-directory", type=Path)
    p.add_argument("--input-directory", type=Path)
    p.add_argument("--temp-directory", type=Path)
    p.add_argument("--max-upload-size", type=float, help="MB (default 100)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--cache-classic", action="store_true")
    cache.add_argument("--cache-lru", type=int, default=0)
    cache.add_argument("--cache-none", action="store_true")
    p.add_argument(
        "--object-info",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a recorded /object_info (JSON): its classes are served, validated and run generically "
        "(repeatable; a later file's class replaces an earlier one's); loaded after the default records",
    )
    p.add_argument(
        "--bare",
        action="store_true",
        help="serve only the classes the emulator implements: no default records (ComfyUI 0.3.64's core "
        "classes and the locked node packs')",
    )
    p.add_argument(
        "--preview-method",
        choices=PREVIEW_METHODS,
        default="none",
        help="sampler live previews as binary /ws frames (ComfyUI's flag; auto = latent2rgb)",
    )
    p.add_argument("--preview-size", type=int, default=512, help="the longest side of a preview, px")
    p.add_argument("--disable-auto-launch", action="store_true", help="accepted for ComfyUI compatibility")
    p.add_argument("--step-ms", type=float, default=55.0, help="one sampler step at 512x512, batch 1")
    p.add_argument("--checkpoint-load-ms", type=float, default=2000.0)
    p.add_argument("--lora-load-ms", type=float, default=300.0)
    p.add_argument("--controlnet-load-ms", type=float, default=500.0)
    faults = p.add_argument_group("fault injection (off by default)")
    faults.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of prompts ending in execution_error"
    )
    faults.add_argument("--oom-rate", type=float, default=0.0, help="share ending in torch.OutOfMemoryError")
    faults.add_argument("--crash-after-steps", type=int, default=0, help="hard exit after N sampler steps")
    faults.add_argument("--drop-ws-after", type=int, default=0, help="close every socket after N frames")
    faults.add_argument("--slow-start-s", type=float, default=0.0, help="answer HTTP only after S seconds")
    faults.add_argument(
        "--http-500-rate", type=float, default=0.0, help="share of POST /prompt answering 500"
    )
    faults.add_argument("--fault-seed", type=int, default=None)
    return p.parse_args(argv)


def build(args: argparse.Namespace) -> Emulator:
    config = Config(
        step_ms=args.step_ms,
        checkpoint_load_ms=args.checkpoint_load_ms,
        lora_load_ms=args.lora_load_ms,
        controlnet_load_ms=args.controlnet_load_ms,
        preview_method=args.preview_method,
        preview_size=args.preview_size,
    )
    if args.cache_none:
        config.cache = "none"
    elif args.cache_lru:
        config.cache, config.cache_lru = "lru", args.cache_lru
    if args.max_upload_size is not None:
        config.max_upload_size = int(args.max_upload_size * 1024 * 1024)
        config.max_upload_size_is_float = True
    faults = Faults(
        fail_rate=args.fail_rate,
        oom_rate=args.oom_rate,
        crash_after_steps=args.crash_after_steps,
        drop_ws_after=args.drop_ws_after,
        http_500_rate=args.http_500_rate,
        seed=args.fault_seed,
    )
    folders = Folders(args.base_directory, args.output_directory, args.input_directory, args.temp_directory)
    emulator = Emulator(folders, config, faults)
    defaults = [] if args.bare else [p for p in DEFAULT_RECORDS if p.is_file()]
    if not args.bare and len(defaults) < len(DEFAULT_RECORDS):
        logger.warning("no default records (not a source checkout?): serving the emulator's own classes only")
        defaults = []
    for path in [*defaults, *args.object_info]:
        report = emulator.nodes.load(read_record(path))
        logger.info(
            "%s: %d classes loaded, %d implemented here",
            path.name,
            len(report["added"]) + len(report["updated"]),
            len(report["implemented"]),
        )
    return emulator


async def serve(args: argparse.Namespace) -> None:
    if args.slow_start_s:
        await asyncio.sleep(args.slow_start_s)  # like ComfyUI loading custom nodes: the port opens late
    emulator = build(args)
    runner = web.AppRunner(make_app(emulator), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.listen, args.port).start()
    logger.info("ComfyUI emulator (0.3.64) listening on http://%s:%d", args.listen, args.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        emulator.folders.cleanup()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(parse_args(argv)))
    except KeyboardInterrupt:
        pass
    except RecordError as exc:  # a file that cannot be read or is not /object_info
        raise SystemExit(f"--object-info: {exc}") from exc


if __name__ == "__main__":
    main()

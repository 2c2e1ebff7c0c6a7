"""Render each style's preview image through the running stack, and save it where the manifest says.

    python -m loras.render_previews --backend-url http://127.0.0.1:8000 --token <designer token>
        [--styles indochine,minimalist] [--seed 1234] [--out-dir previews-review/]
    python -m loras.render_previews --placeholders     # drawn locally, no stack needed

For every style: `POST /api/jobs` (a 512×512 text-to-image job with one fixed room prompt and seed, so
the previews differ only by style), poll `GET /api/jobs/{id}` until it succeeds, fails or times out,
download the image (`url` of the first image, relative to the backend, same bearer token), check it is
an image and write it as PNG to the style's `preview_image`. A style that fails does not stop the
others; an unreachable backend or a rejected token stops everything. Exit status 1 if any style failed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from contract.files import atomic_write_bytes
from contract.styles import Manifest, ManifestError, Style, load_manifest
from loras.cli import configure_logging, description, write_out

logger = logging.getLogger(__name__)

TOKEN_ENV = "STUDIO_TOKEN"
DEFAULT_BACKEND_URL = "http://127.0.0.1:8000"
DEFAULT_PROMPT = (
    "a spacious living room with a sofa, two armchairs, a coffee table, a rug, plants and tall windows"
)
DEFAULT_SEED = 1234
JOB_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 2.0
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PLACEHOLDER_SIZE = 256
# Placeholder colours (background, accent, text); other styles get colours derived from their id.
PALETTES = {
    "indochine": ((46, 64, 48), (176, 132, 64), (240, 228, 200)),  # tropical green, brass, cream
    "minimalist": ((236, 232, 224), (196, 176, 148), (60, 60, 60)),  # plaster, white oak, charcoal
    "none": ((120, 124, 128), (168, 172, 176), (250, 250, 250)),  # neutral greys
}


class PreviewError(RuntimeError):
    """One style's preview could not be made."""


class BackendUnavailable(PreviewError):
    """Nothing will work: the backend is unreachable or refuses the token."""


@dataclass(frozen=True)
class PreviewOptions:
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = ""
    seed: int | None = DEFAULT_SEED
    steps: int = 25
    cfg: float = 7.0
    size: int = 512
    job_timeout_s: float = JOB_TIMEOUT_S
    poll_interval_s: float = POLL_INTERVAL_S


def job_payload(style_id: str, options: PreviewOptions) -> dict[str, Any]:
    """The `POST /api/jobs` body for one style's preview."""
    return {
        "kind": "text",
        "prompt": options.prompt,
        "negative_prompt": options.negative_prompt,
        "style": style_id,
        "width": options.size,
        "height": options.size,
        "steps": options.steps,
        "cfg": options.cfg,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "seed": options.seed,
        "num_images": 1,
    }


# --- HTTP -------------------------------------------------------------------------------------------------


def make_client(backend_url: str, token: str, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """One client for every call: bearer token, explicit timeouts, redirects followed (images may be
    served as a redirect to a presigned S3 URL; httpx drops the token when the origin changes)."""
    return httpx.Client(
        base_url=backend_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
        follow_redirects=True,
        transport=transport,
    )


def _error_message(response: httpx.Response) -> str:
    """The backend's `{"error": {"code", "message"}}`, or the start of whatever else it sent."""
    try:
        error = response.json().get("error", {})
        return f"{error.get('code', 'error')}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return response.text[:200].strip() or response.reason_phrase


def _request(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise PreviewError(f"{method} {url}: no answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"cannot reach the backend at {client.base_url}: {exc}") from exc
    if response.status_code in (401, 403):
        raise BackendUnavailable(f"the backend refused the token (HTTP {response.status_code})")
    if response.is_error:
        raise PreviewError(f"{method} {url}: HTTP {response.status_code} {_error_message(response)}")
    return response


def submit_job(client: httpx.Client, payload: dict[str, Any]) -> str:
    body = _request(client, "POST", "/api/jobs", json=payload).json()
    job_id = body.get("id") if isinstance(body, dict) else None
    if not job_id:
        raise PreviewError(f"POST /api/jobs answered without a job id: {body!r}")
    return str(job_id)


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    options: PreviewOptions,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the job until it is finished; the final job document, or PreviewError."""
    deadline = clock() + options.job_timeout_s
    while True:
        job = dict(_request(client, "GET", f"/api/jobs/{job_id}").json())
        status = job.get("status")
        if status in TERMINAL:
            break
        if clock() >= deadline:
            raise PreviewError(f"job {job_id} still {status} after {options.job_timeout_s:g}s")
        sleep(options.poll_interval_s)
    if status != "succeeded":
        error = job.get("error") or {}
        raise PreviewError(f"job {job_id} {status}: {error.get('code', '?')}: {error.get('message', '')}")
    if not job.get("images"):
        raise PreviewError(f"job {job_id} succeeded without images")
    return job


def download_png(client: httpx.Client, url: str) -> bytes:
    """The image at `url` (relative to the backend), checked and re-encoded as PNG if needed."""
    data = _request(client, "GET", url).content
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "PNG":
                im.verify()
                return data
            out = io.BytesIO()
            im.convert("RGB").save(out, format="PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise PreviewError(f"GET {url} did not return an image: {exc}") from exc


# --- previews ---------------------------------------------------------------------------------------------


def render_preview(client: httpx.Client, style: Style, target: Path, options: PreviewOptions) -> Path:
    job_id = submit_job(client, job_payload(style.id, options))
    logger.info(
        "preview job submitted", extra={"action": "preview_submitted", "style": style.id, "job_id": job_id}
    )
    job = wait_for_job(client, job_id, options)
    atomic_write_bytes(target, download_png(client, str(job["images"][0]["url"])))
    logger.info("preview saved", extra={"action": "preview_saved", "style": style.id, "path": str(target)})
    return target


def preview_target(manifest: Manifest, style_id: str, out_dir: Path | None) -> Path:
    path = manifest.preview_path(style_id)
    return out_dir / path.name if out_dir is not None else path


def render_previews(
    client: httpx.Client,
    manifest: Manifest,
    style_ids: Sequence[str],
    options: PreviewOptions,
    out_dir: Path | None = None,
) -> dict[str, str]:
    """style id -> the saved path, or the error for that style. BackendUnavailable stops the loop."""
    results: dict[str, str] = {}
    for style_id in style_ids:
        target = preview_target(manifest, style_id, out_dir)
        try:
            results[style_id] = str(render_preview(client, manifest.get(style_id), target, options))
        except BackendUnavailable:
            raise
        except PreviewError as exc:
            logger.error("%s: %s", style_id, exc)
            results[style_id] = f"failed: {exc}"
    return results


def draw_placeholder(style: Style, size: int = PLACEHOLDER_SIZE) -> bytes:
    """A flat PNG in the style's colours with its name: stands in until a real render replaces it."""
    default = hashlib.sha256(style.id.encode()).digest()
    background, accent, ink = PALETTES.get(
        style.id, (tuple(default[:3]), tuple(default[3:6]), (255, 255, 255))
    )
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, size * 2 // 3, size, size), fill=accent)
    draw.rectangle(
        (size // 8, size // 6, size * 3 // 8, size * 2 // 3), outline=accent, width=max(2, size // 64)
    )
    font = ImageFont.load_default(size=max(12, size // 9))
    draw.text((size // 2, size * 5 // 6), style.display_name, fill=ink, font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# --- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loras.render_previews", description=description(__doc__))
    p.add_argument("--backend-url", default=DEFAULT_BACKEND_URL, help="the running backend")
    p.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"designer token (default ${TOKEN_ENV})"
    )
    p.add_argument("--styles", help="comma-separated style ids (default: all)")
    p.add_argument("--manifest", type=Path, help="style manifest (default loras/styles.toml)")
    p.add_argument("--prompt", default=DEFAULT_PROMPT)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--timeout-s", type=float, default=JOB_TIMEOUT_S, help="per job")
    p.add_argument("--out-dir", type=Path, help="write here instead of over the manifest's previews")
    p.add_argument("--placeholders", action="store_true", help="draw placeholder previews locally instead")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _style_ids(manifest: Manifest, styles: str | None) -> list[str]:
    if not styles:
        return manifest.ids
    ids = [s.strip() for s in styles.split(",") if s.strip()]
    unknown = [s for s in ids if s not in manifest.styles]
    if unknown:
        raise ManifestError(f"unknown styles {', '.join(unknown)} (known: {', '.join(manifest.ids)})")
    return ids


def _validate_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.placeholders:
        return
    if not args.token:
        p.error(f"a designer token is needed: --token or ${TOKEN_ENV}")
    try:
        url = httpx.URL(args.backend_url)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        p.error(f"--backend-url must be an http(s) URL, got {args.backend_url!r}")
    if args.timeout_s <= 0:
        p.error("--timeout-s must be positive")


def _write_placeholders(manifest: Manifest, ids: Sequence[str], out_dir: Path | None) -> dict[str, str]:
    results = {}
    for style_id in ids:
        target = preview_target(manifest, style_id, out_dir)
        atomic_write_bytes(target, draw_placeholder(manifest.get(style_id)))
        results[style_id] = str(target)
    return results


def _render(args: argparse.Namespace, manifest: Manifest, ids: list[str]) -> dict[str, str]:
    options = PreviewOptions(
        prompt=args.prompt, seed=args.seed, steps=args.steps, job_timeout_s=args.timeout_s
    )
    with make_client(args.backend_url, args.token) as client:
        return render_previews(client, manifest, ids, options, args.out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _validate_args(parser, args)
    configure_logging(args.verbose)
    try:
        manifest = load_manifest(args.manifest)
        ids = _style_ids(manifest, args.styles)
        if args.placeholders:
            results = _write_placeholders(manifest, ids, args.out_dir)
        else:
            results = _render(args, manifest, ids)
    except (ManifestError, BackendUnavailable, OSError) as exc:
        logger.error("%s", exc)
        return 2
    write_out("\n".join(f"{style_id}: {outcome}" for style_id, outcome in results.items()))
    return 1 if any(v.startswith("failed:") for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

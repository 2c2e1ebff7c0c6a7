"""Pieces both views draw: a job's live progress, its result grid with actions, a render's settings.

User text (prompts, error messages) is shown with st.text or escaped, never as Markdown or HTML.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from frontend import state, wording
from frontend.api_client import FINAL_STATUSES, ApiClient, ApiError, EventStreamLost

POLL_S = 0.5
BUILTIN_KINDS = ("text", "sketch")  # the built-in templates, with the studio's own form
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/brush:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}
_MARKDOWN_SPECIAL = "\\`*_{}[]()<>#+-.!|~$:"


def escape(text: str) -> str:
    """Text safe inside Markdown (st.caption, st.markdown): every special character escaped."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text).replace("\n", " ")


@st.cache_data(max_entries=300, ttl=3600, show_spinner=False)
def image_bytes(_client: ApiClient, token: str, url: str) -> bytes:
    """Renders never change once stored: cached per designer (the token is part of the key)."""
    return _client.binary(url)


def _elapsed(job: dict[str, Any]) -> float:
    start = job.get("started_at") or job.get("created_at")
    if not start:
        return 0.0
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(start)).total_seconds())


def _label(
    job: dict[str, Any],
    value: int,
    maximum: int,
    position: int | None,
    notice: dict[str, Any] | None = None,
    restart: str | None = None,
    started: bool = True,
) -> str:
    """The progress bar's text; a queued job's notice (its server is down) is part of it, a render
    restarting on the GPU says so until its new attempt passes what was shown, and one sent to the GPU
    but waiting there behind another render is 'next on the GPU' until it really starts."""
    if job["status"] == "queued":
        where = f"position {position} in the queue" if position else "waiting for the GPU"
        return f"Queued: {where}" + (f" · {escape(str(notice['message']))}" if notice else "")
    if restart:
        return f"{restart} · {_elapsed(job):.1f} s"
    if maximum:
        return f"Rendering: step {value}/{maximum} · {_elapsed(job):.1f} s"
    if not started:
        return "Next on the GPU: position 1, it starts when the render ahead of it ends"
    return f"Starting · {_elapsed(job):.1f} s"


@dataclass
class Shown:
    """What the progress bar shows: it never goes back; a restart on the GPU is said in its label."""

    value: int = 0
    maximum: int = 0
    position: int | None = None
    notice: dict[str, Any] | None = None  # why a queued job waits (its server is down), from the backend
    restart: str | None = None  # "Restarting on the GPU, attempt 2" until the new attempt passes the bar
    started: bool = False  # ComfyUI began the render (its `started` event): until then it waits there

    @property
    def fraction(self) -> float:
        return min(1.0, self.value / self.maximum) if self.maximum else 0.0

    def label(self, job: dict[str, Any]) -> str:
        started = self.started or self.maximum > 0
        return _label(job, self.value, self.maximum, self.position, self.notice, self.restart, started)

    def apply(self, job: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
        """Fold one stream message into the bar, and into the job's `status` and `started_at`."""
        if kind == "position":
            self.position, self.notice = data.get("position"), data.get("notice")
        elif kind == "progress":
            job["status"], self.started = "running", True
            if int(data["max"]) and int(data["value"]) / int(data["max"]) >= self.fraction:
                self.value, self.maximum = int(data["value"]), int(data["max"])
                self.restart = None
        elif data.get("status"):
            job["status"] = data["status"]
            self.started = self.started or kind == "started"
            if data["status"] == "running" and job.get("started_at") is None:
                job["started_at"] = datetime.now(UTC).isoformat()
            if kind in ("submitted", "resubmitted") and int(data.get("attempt") or 1) > 1:
                self.restart = f"Restarting on the GPU, attempt {data['attempt']}"
            elif data["status"] != "running":
                self.restart = None


def follow(client: ApiClient, job: dict[str, Any]) -> dict[str, Any]:
    """Draw the job's progress live from the backend's event stream until it ends; the final job."""
    if job["status"] in FINAL_STATUSES:
        return job
    slot = st.empty()  # the bar and Cancel go away as soon as the job ends, in this same run
    shown = Shown(
        job["progress"]["value"], job["progress"]["max"], job.get("queue_position"), job.get("notice")
    )
    with slot.container():
        bar = st.progress(shown.fraction, text=shown.label(job))
        forming = st.empty()  # the render forming, under the bar, while it samples
        st.button(
            "Cancel",
            key=f"cancel_{job['id']}",
            on_click=_cancel,
            args=(client, job["id"]),
            icon=":material/stop_circle:",
        )
    last_id = 0
    while job["status"] not in FINAL_STATUSES:
        try:
            for message in client.events(job["id"], after=last_id, tick_s=POLL_S):
                if message is not None and message["type"] == "preview":
                    preview_image(forming, message.get("data") or {})
                elif message is not None:
                    last_id = max(last_id, int(message.get("id") or 0))
                    shown.apply(job, message["type"], message.get("data") or {})
                bar.progress(shown.fraction, shown.label(job))
        except EventStreamLost:
            time.sleep(POLL_S)  # backend restarting or a proxy cut: poll once, then reconnect
        job = client.job(job["id"])
    slot.empty()
    return job


def preview_image(slot: Any, data: dict[str, Any]) -> None:
    """The newest live preview of a render, replacing the last one in `slot` (under the progress bar)."""
    head, _, body = str(data.get("image", "")).partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        return
    try:
        image = base64.b64decode(body, validate=True)
    except ValueError:
        return
    alt = f"Preview of the render in progress, step {data.get('step')} of {data.get('steps')}"
    slot.image(image, width=256, alt=alt)


def _cancel(client: ApiClient, job_id: str) -> None:
    try:
        client.cancel(job_id)
        st.session_state["notice"] = ("info", "Render cancelled.")
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))


def show_outcome(job: dict[str, Any]) -> None:
    if job["status"] == "failed":
        said, exact = wording.failure(job)
        st.error(escape(said), icon=":material/error:")
        if exact:
            with st.expander("Details for your studio admin"):
                st.text(exact)
    elif job["status"] == "cancelled":
        st.info("This render was cancelled.", icon=":material/cancel:")


def settings_text(params: dict[str, Any]) -> str:
    """A render's exact settings, one line each (plain text)."""
    lines = [
        f"Prompt: {params.get('prompt', '')}",
        f"Negative: {params.get('negative_prompt', '') or '(none)'}",
        f"Style: {params.get('style')}   Kind: {params.get('kind', 'text')}",
        f"Size: {params.get('width')} × {params.get('height')}   Steps: {params.get('steps')}   "
        f"Guidance: {params.get('cfg')}",
        f"Sampler: {params.get('sampler')} / {params.get('scheduler')}   Seed: {params.get('seed')}   "
        f"Images: {params.get('num_images', 1)}",
    ]
    if params.get("kind") == "sketch":
        lines.append(f"Sketch strength: {params.get('sketch_strength')}")
    if params.get("lora_strength") is not None:
        lines.append(f"Style strength: {params.get('lora_strength')}")
    return "\n".join(lines)


def inputs_text(job: dict[str, Any]) -> str:
    """A template render's input values, one line each (plain text)."""
    template = job.get("template") or {}
    lines = [f"Template: {template.get('name', job['kind'])} · version {template.get('version', '?')}"]
    lines += [f"{key}: {value}" for key, value in job["params"].items()]
    lines.append(f"Seed: {job['seed']}")
    return "\n".join(lines)


def passes(client: ApiClient, job: dict[str, Any]) -> None:
    """The intermediate passes of a template render, as a labelled strip under the result."""
    shown = job.get("passes") or []
    if not shown:
        return
    st.caption("Passes")
    for col, image in zip(st.columns(max(len(shown), 4)), shown, strict=False):
        try:
            data = image_bytes(client, client.token, image.get("thumbnail_url") or image["url"])
        except ApiError:
            col.caption("not available")
            continue
        label = image.get("label") or f"node {image.get('node_id')}"  # a lead's words: captions are Markdown
        col.image(data, caption=escape(label), width="stretch", alt=f"Intermediate pass: {label}")


def render_alt(job: dict[str, Any], image: dict[str, Any]) -> str:
    """What a render shows, for screen readers: its brief, style and seed."""
    params = job.get("params") or {}
    brief = str(params.get("prompt") or (job.get("template") or {}).get("name") or job["kind"])
    brief = brief if len(brief) <= 160 else brief[:159] + "…"
    style = job.get("style") or "no"
    return f"Render of {brief}; {style} style, seed {image['seed']}, {image['width']} by {image['height']} px"


def results(client: ApiClient, job: dict[str, Any], *, actions: bool = True) -> None:
    """The job's images in a grid; each with download, variations, compare styles, use as sketch."""
    images = job.get("images") or []
    if not images:
        return
    cols = st.columns(min(len(images), 2))
    for i, image in enumerate(images):
        with cols[i % len(cols)]:
            try:
                data = image_bytes(client, client.token, image["url"])
            except ApiError as err:
                st.warning(escape(wording.say(err)))
                continue
            label = job.get("style") or job["kind"]
            st.image(
                data,
                caption=f"{label} · seed {image['seed']} · {image['width']}×{image['height']}",
                alt=render_alt(job, image),
                width="stretch",
            )
            name = f"studio-{label}-{image['seed']}.png"
            row = st.container(horizontal=True, wrap=True)
            row.download_button(
                "Download", data, name, "image/png", key=f"dl_{image['id']}", icon=":material/download:"
            )
            if actions:
                row.button(
                    "Variations",
                    key=f"var_{image['id']}",
                    on_click=_variations,
                    args=(client, job),
                    help="The same settings with new seeds",
                    icon=":material/auto_awesome:",
                )
                if job["kind"] in BUILTIN_KINDS:  # another template's inputs have no style to vary
                    row.button(
                        "Compare styles",
                        key=f"cmp_{image['id']}",
                        on_click=_compare,
                        args=(client, job, image["seed"]),
                        help="This prompt and seed in every style, side by side",
                        icon=":material/view_column:",
                    )
                row.button(
                    "Use as sketch",
                    key=f"sk_{image['id']}",
                    on_click=_use_as_sketch,
                    args=(client, data, image["id"]),
                    help="Start the next render from this image",
                    icon=":material/draw:",
                )


def _variations(client: ApiClient, job: dict[str, Any]) -> None:
    try:
        state.show_job(client.retry(job["id"], new_seed=True)["id"])
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))


def _compare(client: ApiClient, job: dict[str, Any], seed: int) -> None:
    params = {k: v for k, v in job["params"].items() if v is not None}
    params.update(seed=seed, num_images=1)
    params.pop("lora_strength", None)  # each style at its own default strength
    ids: list[str] = []
    try:
        for style in (st.session_state.get("style_ids") or {}).get(job["kind"]) or [job["style"]]:
            ids.append(client.submit_job({**params, "style": style}, str(uuid.uuid4()))["id"])
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
    if ids:
        state.show_comparison(ids)


def _use_as_sketch(client: ApiClient, data: bytes, image_id: str) -> None:
    try:
        upload = client.upload_sketch(data, f"render-{image_id}.png", "image/png")
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
        return
    state.use_sketch(upload)
    st.session_state["notice"] = ("success", "The render is now the sketch of your next render.")


def comparison(client: ApiClient, job_ids: list[str], style_names: dict[str, str]) -> None:
    """Several jobs side by side (one per style); redrawn every POLL_S while any of them runs.

    A fragment, so the rest of the page stays usable while the renders progress.
    """
    jobs = [client.job(j) for j in job_ids]
    if all(j["status"] in FINAL_STATUSES for j in jobs):
        _draw_comparison(client, jobs, style_names)
    else:
        _live_comparison(client, job_ids, style_names)


@st.fragment(run_every=POLL_S)
def _live_comparison(client: ApiClient, job_ids: list[str], style_names: dict[str, str]) -> None:
    jobs = [client.job(j) for j in job_ids]
    _draw_comparison(client, jobs, style_names)
    if all(j["status"] in FINAL_STATUSES for j in jobs):
        st.rerun()  # the whole page, once: the finished comparison is drawn without the timer


def _draw_comparison(client: ApiClient, jobs: list[dict[str, Any]], style_names: dict[str, str]) -> None:
    for col, job in zip(st.columns(len(jobs)), jobs, strict=True):
        with col:
            st.markdown(f"**{escape(style_names.get(job['style'], job['style']))}**")
            if job["status"] in FINAL_STATUSES:
                show_outcome(job)
                results(client, job, actions=False)
            else:
                value, maximum = job["progress"]["value"], job["progress"]["max"]
                text = _label(job, value, maximum, job.get("queue_position"), job.get("notice"))
                st.progress(min(1.0, value / maximum) if maximum else 0.0, text=text)

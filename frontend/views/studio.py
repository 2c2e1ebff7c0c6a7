"""The studio: describe a room or start from a sketch, pick a style, render, watch it, use the results."""

from __future__ import annotations

import uuid
from typing import Any

import streamlit as st

from frontend import presets, render_panel, sketch_form, state, style_cards, template_form, wording
from frontend.api_client import ApiClient, ApiError
from frontend.components import comparison, escape


def _apply_preset() -> None:
    chosen = presets.preset(st.session_state["w_preset"])
    if chosen is not None:
        st.session_state["w_prompt"] = chosen.prompt
        st.session_state["w_negative"] = chosen.negative


def _apply_size() -> None:
    size = presets.SIZE_PRESETS.get(st.session_state["w_size"])
    if size is not None:
        st.session_state["w_width"], st.session_state["w_height"] = size


def _size_edited() -> None:
    ss = st.session_state
    ss["w_size"] = presets.size_preset_for(ss["w_width"], ss["w_height"])


def job_body() -> dict[str, Any]:
    """The POST /api/jobs body from the form."""
    ss = st.session_state
    body: dict[str, Any] = {
        "kind": form_kind(),
        "prompt": ss["w_prompt"],
        "negative_prompt": ss["w_negative"],
        "style": ss["w_style"],
        "width": int(ss["w_width"]),
        "height": int(ss["w_height"]),
        "steps": int(ss["w_steps"]),
        "cfg": float(ss["w_cfg"]),
        "sampler": ss["w_sampler"],
        "scheduler": ss["w_scheduler"],
        "seed": None if ss["w_random_seed"] else int(ss["w_seed"]),
        "num_images": int(ss["w_num_images"]),
    }
    if body["kind"] == "sketch":
        body["upload_id"] = (ss["upload"] or {}).get("id")
        body["sketch_strength"] = float(ss["w_sketch_strength"])
    return body


def form_problems() -> dict[str, str]:
    """Field -> why Render is off: what the API would refuse, said before it is sent."""
    ss = st.session_state
    found = {
        "w_prompt": wording.text_problem(ss["w_prompt"] or "", required=True),
        "w_negative": wording.text_problem(ss["w_negative"] or ""),
        "w_width": wording.side_problem(ss["w_width"]),
        "w_height": wording.side_problem(ss["w_height"]),
    }
    return {k: v for k, v in found.items() if v}


def field_problem(key: str, problems: dict[str, str]) -> None:
    """The reason next to its field (a keyed container the browser tests find)."""
    if key in problems:
        with st.container(key=f"problem_{key}"):
            st.error(escape(problems[key]), icon=":material/error:")


def _submit(client: ApiClient) -> None:
    if form_problems():
        return  # Render is off while a field is refused; a stale click changes nothing
    body = job_body()
    if body["kind"] == "sketch" and not body.get("upload_id"):
        st.session_state["notice"] = ("error", "Upload or draw a sketch first.")
        return
    try:
        job = client.submit_job(body, str(uuid.uuid4()))
    except ApiError as err:
        st.session_state["notice"] = ("error", wording.say(err))
        return
    state.show_job(job["id"])


def form_kind() -> str:
    return "sketch" if st.session_state["w_mode"] == state.MODES[1] else "text"


def unavailable_reason(style: dict[str, Any], kind: str) -> str | None:
    """Why no server can render `kind` jobs in this style now (None: it can, or nothing says otherwise)."""
    verdict = (style.get("kinds") or {}).get(kind) or {}
    if verdict.get("available", True):
        return None
    return str(verdict.get("reason") or "No server has this style's files.")


def usable_ids(styles: list[dict[str, Any]]) -> dict[str, list[str]]:
    """job kind -> the styles a render of that kind can use now."""
    return {k: [s["id"] for s in styles if not unavailable_reason(s, k)] for k in ("text", "sketch")}


def _pick_style(style_id: str) -> None:
    st.session_state["w_style"] = style_id


def style_picker(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    """A card per style, the card the control; one whose files no server of this kind has says why and
    cannot be picked."""
    kind = form_kind()
    reasons = {s["id"]: unavailable_reason(s, kind) for s in styles}
    ids = [s["id"] for s in styles if not reasons[s["id"]]]
    st.markdown("**Style**")
    if ids and st.session_state["w_style"] not in ids:
        st.session_state["w_style"] = "indochine" if "indochine" in ids else ids[0]
    style_cards.cards(client, styles, st.session_state["w_style"], reasons, _pick_style)
    if not ids:
        st.warning(f"No style can render {kind} jobs now; the servers lack their model files.")


def brief(problems: dict[str, str]) -> None:
    """The prompt and the negative prompt: any length is taken in, the limit and a counter shown, and a
    brief over the API's limit refused next to it (a paste over the limit used to be dropped silently)."""
    ss = st.session_state
    st.text_area("Describe the room", key="w_prompt", height=110)
    st.caption(f"{wording.count_text(ss['w_prompt'] or '')} · the studio takes up to {wording.PROMPT_MAX:,}")
    field_problem("w_prompt", problems)
    st.text_area("Keep out of the render (negative prompt)", key="w_negative", height=68)
    st.caption(wording.count_text(ss["w_negative"] or ""))
    field_problem("w_negative", problems)


def advanced(problems: dict[str, str]) -> None:
    size_refused = "w_width" in problems or "w_height" in problems
    with st.expander("Advanced settings", expanded=size_refused):
        st.selectbox(
            "Size", [*presets.SIZE_PRESETS, presets.CUSTOM_SIZE], key="w_size", on_change=_apply_size
        )
        c1, c2 = st.columns(2)
        limits = f"{wording.SIDE_MIN} to {wording.SIDE_MAX} px, a multiple of {wording.SIDE_STEP}"
        with c1:  # no min/max on the widget: an out-of-range value reaches the check and is refused
            st.number_input("Width (px)", step=8, key="w_width", on_change=_size_edited, help=limits)
            field_problem("w_width", problems)
        with c2:
            st.number_input("Height (px)", step=8, key="w_height", on_change=_size_edited, help=limits)
            field_problem("w_height", problems)
        st.caption(f"Width and height: {limits}.")
        c1, c2 = st.columns(2)
        c1.slider("Steps", 1, 100, key="w_steps", help="More steps: finer detail, slower")
        c2.slider("Guidance", 1.0, 20.0, step=0.5, key="w_cfg", help="How literally the prompt is followed")
        c1, c2 = st.columns(2)
        c1.selectbox("Sampler", presets.SAMPLERS, key="w_sampler")
        c2.selectbox("Scheduler", presets.SCHEDULERS, key="w_scheduler")
        c1, c2 = st.columns(2)
        c1.checkbox("Random seed", key="w_random_seed")
        c1.number_input(
            "Seed", 0, 2**53 - 1, step=1, key="w_seed", disabled=st.session_state["w_random_seed"]
        )
        c2.slider("Images", 1, 4, key="w_num_images")


def compare_section(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    head = st.container(horizontal=True, vertical_alignment="center")
    head.subheader("Compare styles")
    head.button("Close", key="close_compare", on_click=state.close_comparison, icon=":material/close:")
    comparison(client, st.session_state["compare_ids"], {s["id"]: s["name"] for s in styles})
    st.divider()


def custom_templates(client: ApiClient) -> list[dict[str, Any]]:
    """The published templates besides the built-ins (none when the backend has no templates)."""
    try:
        listed = client.templates()
    except ApiError:
        return []
    return [t for t in listed if not t["builtin"] and t["current_version"] and not t["retired"]]


def template_picker(templates: list[dict[str, Any]]) -> str:
    """Which template the studio renders with: "" for the built-in text and sketch renders."""
    titles = {t["name"]: t["title"] for t in templates}
    if st.session_state["w_template"] not in ("", *titles):
        st.session_state["w_template"] = ""
    return str(
        st.selectbox(  # options are drawn as plain text: a title with markup shows as typed
            "Template",
            ["", *titles],
            key="w_template",
            format_func=lambda n: titles.get(n) or "Studio render: describe a room or start from a sketch",
            help="Templates your leads published; each has its own form",
        )
    )


def _submit_template(client: ApiClient, template: dict[str, Any], values: dict[str, Any]) -> None:
    name = template["name"]
    try:
        job = client.submit_template_job(name, values, str(uuid.uuid4()), template["current_version"])
    except ApiError as err:
        fields = template_form.server_errors(err)
        refused = {k: {"message": m, "value": values.get(k)} for k, m in fields.items()}
        st.session_state["tpl_refused"][name] = refused
        st.session_state["notice"] = ("error", wording.say(err))
        return
    st.session_state["tpl_refused"].pop(name, None)
    state.show_job(job["id"])


def template_section(client: ApiClient, name: str, styles: list[dict[str, Any]]) -> None:
    """The form a template's declared inputs make, and its Render (off while a value is refused)."""
    try:
        template = client.template(name)
    except ApiError as err:
        st.warning(escape(wording.say(err)))
        return
    st.markdown(f"**{escape(template['title'])}** · version {template['current_version']}")
    if template.get("description"):
        st.text(template["description"])
    refused = st.session_state["tpl_refused"].get(name, {})
    values, problems = template_form.form(client, template, styles, refused)
    if problems:
        st.caption(f"Fix {len(problems)} field(s) above to render.")
    if st.button(
        "Render", type="primary", key="render_template", disabled=bool(problems), icon=":material/brush:"
    ):
        _submit_template(client, template, values)
        st.rerun()


def page(client: ApiClient) -> None:
    styles = client.styles()
    templates = custom_templates(client)
    st.session_state["style_ids"] = usable_ids(styles)
    if restore := st.session_state["restore_form"]:
        st.session_state["restore_form"] = None
        render_panel.restore_form(client, restore)
    notice = st.session_state.pop("notice", None)
    if notice:
        getattr(st, notice[0])(escape(notice[1]))
    if st.session_state["compare_ids"]:
        compare_section(client, styles)
    panel = st.container(key=render_panel.PANEL_KEY)  # across the top: filled last, as it follows the job
    chosen = template_picker(templates) if templates else ""
    if chosen:
        left, _ = st.columns([3, 2], gap="large")
        with left:
            template_section(client, chosen, styles)
    else:
        builtin_form(client, styles)
    with panel, st.empty().container():  # one slot: a new render replaces the old one at once
        render_panel.current_render(client, styles, {t["name"]: t["title"] for t in templates})


def builtin_form(client: ApiClient, styles: list[dict[str, Any]]) -> None:
    """The built-in text and sketch renders' own form: the brief on the left, style and Render right."""
    left, right = st.columns([6, 5], gap="large")
    with left:
        st.radio("Start", state.MODES, key="w_mode", horizontal=True, label_visibility="collapsed")
        if st.session_state["w_mode"] == state.MODES[1]:
            sketch_form.sketch_input(client)
        st.selectbox(
            "Room preset",
            [p.name for p in presets.ROOM_PRESETS],
            key="w_preset",
            on_change=_apply_preset,
            help="Fills the prompt and the negative prompt with a good start",
        )
        problems = form_problems()
        brief(problems)
    with right:
        style_picker(client, styles)
        advanced(problems)
        if problems:
            st.caption(f"Render is off until {len(problems)} field(s) marked in red are fixed.")
        st.button(
            "Render",
            type="primary",
            key="render",
            on_click=_submit,
            args=(client,),
            icon=":material/brush:",
            disabled=bool(problems),
        )


if __name__ == "__main__":
    from frontend.context import client

    page(client())

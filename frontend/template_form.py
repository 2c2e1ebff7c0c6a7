"""The form a template's declared inputs make: one widget per kind, its limits shown before they are hit,
a value that breaks them refused next to its field (so Render stays off), and the backend's 422
`inputs.<key>` answers put back on their fields.

Labels, help and titles come from the template's author: they are shown as text (escaped), never as
Markdown or HTML. The checks here mirror the effective constraints the API sends; the API stays the
judge (its refusal comes back to the field).
"""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from frontend import style_cards, wording
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape, image_bytes

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp"]
SEED_MAX = 2**64 - 1
_EPS = 1e-9


def widget_key(template: str, key: str) -> str:
    return f"w_tpl_{template}_{key}"


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def limits_text(decl: dict[str, Any]) -> str:
    """The input's limits in words ('' when it has none worth saying)."""
    c, kind = decl.get("constraints") or {}, decl["kind"]
    if kind in ("short_text", "long_text"):
        return f"At most {c['max_length']} characters." if c.get("max_length") else ""
    if kind == "image":
        w, h = c.get("min_width"), c.get("min_height")
        return f"At least {w or 1} × {h or 1} px; PNG, JPEG or WebP." if w or h else "PNG, JPEG or WebP."
    if kind in ("integer", "number", "seed"):
        lo, hi = c.get("min"), c.get("max")
        if kind == "seed":
            lo, hi = 0 if lo is None else lo, SEED_MAX if hi is None else hi
        parts = []
        if lo is not None and hi is not None:
            parts.append(f"From {_num(lo)} to {_num(hi)}")
        elif lo is not None:
            parts.append(f"At least {_num(lo)}")
        elif hi is not None:
            parts.append(f"At most {_num(hi)}")
        if c.get("step") and kind != "seed":
            parts.append(f"in steps of {_num(c['step'])}")
        return (", ".join(parts) + ".") if parts else ""
    return ""


def check(decl: dict[str, Any], value: Any) -> str | None:
    """Why `value` is refused for this input (None: it is accepted), from its effective constraints."""
    c, kind = decl.get("constraints") or {}, decl["kind"]
    if value is None or value == "":
        needed = decl.get("required", True) and kind != "seed"
        return "This field is required." if needed else None
    if kind in ("short_text", "long_text"):
        limit = c.get("max_length")
        return f"At most {limit} characters (now {len(value)})." if limit and len(value) > limit else None
    if kind in ("integer", "number", "seed"):
        return _check_number(c, kind, value)
    if kind in ("choice", "model") and c.get("choices") and value not in c["choices"]:
        return "Pick one of the listed values."
    return None


def _check_number(c: dict[str, Any], kind: str, value: float) -> str | None:
    lo, hi = c.get("min"), c.get("max")
    if kind == "seed":
        lo, hi = 0 if lo is None else lo, SEED_MAX if hi is None else hi
    if lo is not None and value < lo - _EPS:
        return f"{_num(value)} is below the minimum, {_num(lo)}."
    if hi is not None and value > hi + _EPS:
        return f"{_num(value)} is above the maximum, {_num(hi)}."
    step = c.get("step")
    if step and kind != "seed":
        steps = (value - (lo or 0)) / step
        if abs(steps - round(steps)) > 1e-6:
            return f"Use steps of {_num(step)} from {_num(lo or 0)}."
    return None


def server_errors(err: ApiError) -> dict[str, str]:
    """A 422's details as input key -> message (field paths like `inputs.steps` or `body.inputs.steps`)."""
    found: dict[str, str] = {}
    for detail in err.details:
        parts = detail.field.split(".")
        if "inputs" in parts and parts.index("inputs") + 1 < len(parts):
            found.setdefault(parts[parts.index("inputs") + 1], detail.message)
    return found


def _help(decl: dict[str, Any]) -> str | None:
    text = " ".join(p for p in (decl.get("help") or "", limits_text(decl)) if p)
    return escape(text) if text else None


def _decimals(step: float | None) -> int:
    """As many decimals as the step has (2 without a step)."""
    if step is None:
        return 2
    digits = f"{float(step):.6f}".rstrip("0").split(".")[1]
    return len(digits)


def draw(client: ApiClient, template: str, decl: dict[str, Any], styles: list[dict[str, Any]]) -> Any:
    """The input's widget (labelled and helped as text); its current value."""
    key, kind = widget_key(template, decl["key"]), decl["kind"]
    c, label, default = decl.get("constraints") or {}, escape(decl["label"]), decl.get("default")
    if kind in ("short_text", "long_text"):
        if key not in st.session_state:
            st.session_state[key] = "" if default is None else str(default)
        widget = st.text_input if kind == "short_text" else st.text_area
        return widget(label, key=key, max_chars=c.get("max_length"), help=_help(decl))
    if kind in ("integer", "number"):
        return _number(label, key, decl, default)
    if kind == "seed":
        return _seed(label, key, decl, default)
    if kind in ("choice", "model"):
        options = list(c.get("choices") or ([] if default is None else [default]))
        index = options.index(default) if default in options else (0 if options else None)
        return st.selectbox(label, options, index=index, key=key, format_func=str, help=_help(decl))
    if kind == "image":
        return _image(client, label, key, decl)
    if kind == "style":
        return _style(client, label, key, decl, styles)
    st.caption(f"{label}: this kind of input is not supported here.")
    return default


def _number(label: str, key: str, decl: dict[str, Any], default: Any) -> Any:
    c = decl.get("constraints") or {}
    is_int = decl["kind"] == "integer"
    if key not in st.session_state:  # an optional input without a default starts empty (None)
        start = next((v for v in (default, c.get("min")) if v is not None), 0)
        empty = default is None and not decl.get("required", True)
        st.session_state[key] = None if empty else (int(start) if is_int else float(start))
    if is_int:
        step = int(c.get("step") or 1)
        return st.number_input(label, step=step, key=key, help=_help(decl))
    fmt = f"%.{_decimals(c.get('step'))}f"
    step_f = float(c.get("step") or 0.01)
    return st.number_input(label, step=step_f, format=fmt, key=key, help=_help(decl))


def _seed(label: str, key: str, decl: dict[str, Any], default: Any) -> Any:
    random_key = f"{key}_random"
    if key not in st.session_state:
        st.session_state[key] = int(default) if default is not None else 1234
        st.session_state[random_key] = default is None
    is_random = st.toggle(
        f"Random {label.lower()}", key=random_key, help="A new seed is drawn for every render"
    )
    value = st.number_input(label, step=1, key=key, disabled=is_random, help=_help(decl))
    return None if is_random else value


def _image(client: ApiClient, label: str, key: str, decl: dict[str, Any]) -> Any:
    """An upload (checked by the backend as every sketch is); its id is the value, with a preview."""
    held = f"tpl_upload_{key}"
    file = st.file_uploader(label, type=IMAGE_TYPES, key=key, help=_help(decl))
    if file is None:
        st.session_state.pop(held, None)
        return None
    fingerprint = hashlib.sha256(file.getvalue()).hexdigest()
    upload = st.session_state.get(held)
    if upload is None or upload.get("source") != fingerprint:
        try:
            upload = {**client.upload_sketch(file.getvalue(), file.name, file.type or "image/png")}
        except ApiError as err:
            st.error(escape(wording.say(err)))
            st.session_state.pop(held, None)
            return None
        upload["source"] = fingerprint
        st.session_state[held] = upload
    try:
        st.image(
            image_bytes(client, client.token, upload["url"]),
            width=240,
            alt=f"Your image for {decl['label']}, {upload['width']} by {upload['height']} pixels",
        )
    except ApiError:
        pass
    st.caption(f"{upload['width']} × {upload['height']} px")
    return upload


def _style(
    client: ApiClient, label: str, key: str, decl: dict[str, Any], styles: list[dict[str, Any]]
) -> Any:
    """The style cards (a preview each) and a pick among them, as in the studio's own picker."""
    if not styles:
        st.caption("No style is available.")
        return None
    ids = [s["id"] for s in styles]
    if st.session_state.get(key) not in ids:
        default = decl.get("default")
        st.session_state[key] = default if default in ids else ids[0]
    st.markdown(f"**{label}**")
    for col, style in zip(st.columns(len(styles)), styles, strict=True):
        with col:
            style_cards.card_face(client, style)
    names = {s["id"]: s["name"] for s in styles}
    return st.radio(
        label,
        ids,
        key=key,
        horizontal=True,
        label_visibility="collapsed",
        format_func=lambda i: names[i],
        help=_help(decl),
    )


def image_problem(decl: dict[str, Any], upload: dict[str, Any] | None) -> str | None:
    """An upload smaller than the input's minimum size (the limit shown under it)."""
    c = decl.get("constraints") or {}
    if upload is None:
        return check(decl, None)
    w, h = c.get("min_width") or 0, c.get("min_height") or 0
    if upload["width"] < w or upload["height"] < h:
        return f"The image is {upload['width']} × {upload['height']} px; it must be at least {w} × {h} px."
    return None


def form(
    client: ApiClient, template: dict[str, Any], styles: list[dict[str, Any]], refused: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every input of the template's current version: (values by key, reasons by key for those refused).

    `refused` holds the backend's last answer per key ({"message", "value"}): shown while the value
    is the one it refused.
    """
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for decl in template.get("inputs") or []:
        value = draw(client, template["name"], decl, styles)
        if decl["kind"] == "image":
            reason = image_problem(decl, value)
            value = value["id"] if value else None
        else:
            reason = check(decl, value)
        server = refused.get(decl["key"])
        if reason is None and server is not None and server.get("value") == value:
            reason = str(server["message"])
        if limits := limits_text(decl):
            st.caption(escape(limits))
        if reason is not None:
            problems[decl["key"]] = reason
            with st.container(key=f"problem_{template['name']}_{decl['key']}"):
                st.error(escape(reason), icon=":material/error:")
        if value is not None:
            values[decl["key"]] = value
    return values, problems

"""Models: every model file by ComfyUI folder, which instance has it (missing ones highlighted), what pins
it (sha256, size, licence) and which templates and styles use it; leads (and admins) add a model by upload
or S3 key, and only admins may allow a pickle checkpoint."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.context import client, is_admin, is_lead

HAS, MISSING, UNKNOWN = "✓", "✗ missing", "?"
MISSING_STYLE = "background-color: #f8d7da; color: #842029; font-weight: 600"
SOURCES = ("Upload a file", "A key in the models bucket")


def _cell(has: bool | None) -> str:
    return UNKNOWN if has is None else HAS if has else MISSING


def _size(n: int) -> str:
    return f"{n / 1024**2:,.1f} MiB" if n else ""


def matrix(inventory: dict[str, Any]) -> pd.DataFrame:
    """One row per file: folder, file, one column per instance, the pin and the users."""
    names = [i["name"] for i in inventory["instances"]]
    rows = []
    for folder in inventory["folders"]:
        for f in folder["files"]:
            pin = f["pin"] or {}
            rows.append(
                {
                    "folder": folder["folder"],
                    "file": f["file"],
                    **{name: _cell(f["instances"].get(name)) for name in names},
                    "sha256": (pin.get("sha256") or "not pinned")[:12] if pin else "no pin",
                    "size": _size(pin.get("size_bytes", 0)),
                    "licence": pin.get("licence", ""),
                    "templates": ", ".join(f["templates"]),
                    "styles": ", ".join(f["styles"]),
                }
            )
    columns = ["folder", "file", *names, "sha256", "size", "licence", "templates", "styles"]
    return pd.DataFrame(rows, columns=columns)


def _highlight(value: object) -> str:
    return MISSING_STYLE if value == MISSING else ""


def _add(api: ApiClient, known_folders: list[str]) -> None:
    s = st.session_state
    folder, file, licence = s["w_model_folder"], s["w_model_file"].strip(), s["w_model_licence"].strip()
    upload = s.get("w_model_upload")
    pickle = bool(s.get("w_model_allow_pickle"))
    if not file and upload is not None:
        file = upload.name
    if not (folder and file and licence):
        s["model_notice"] = ("error", "Give the folder, the file name and the licence.")
        return
    try:
        if s["w_model_source"] == SOURCES[0]:
            if upload is None:
                s["model_notice"] = ("error", "Choose the file to upload.")
                return
            added = api.upload_model(upload.getvalue(), folder, file, licence, pickle)
        else:
            key = s["w_model_s3_key"].strip()
            added = api.add_model(folder, file, key, licence, pickle)
    except ApiError as err:
        s["model_notice"] = ("error", err.message)
        return
    what = "added" if added["created"] else "was already pinned"
    s["model_notice"] = ("success", f"{folder}/{file} {what}: the ML hosts fetch it on their next sync.")


def _add_form(api: ApiClient, inventory: dict[str, Any]) -> None:
    folders = inventory["known_folders"]
    with st.expander("Add a model (leads)", expanded=False):
        if not inventory["can_add"]:
            st.info("Adding models is off: the server has no models bucket.")
            return
        with st.form("add_model"):
            st.radio("Source", SOURCES, key="w_model_source", horizontal=True)
            st.selectbox(
                "Folder",
                folders,
                key="w_model_folder",
                index=folders.index("loras") if "loras" in folders else 0,
            )
            st.text_input(
                "File name (as ComfyUI lists it)", key="w_model_file", placeholder="brass_v1.safetensors"
            )
            st.text_input("Licence", key="w_model_licence", placeholder="creativeml-openrail-m")
            st.file_uploader(
                "File (upload)", key="w_model_upload", type=["safetensors", "sft", "ckpt", "pt", "pth", "bin"]
            )
            st.text_input("S3 key (under models/ or loras/)", key="w_model_s3_key")
            if is_admin():
                st.checkbox(
                    "Allow a pickle checkpoint (it runs code when loaded)", key="w_model_allow_pickle"
                )
            st.form_submit_button("Add the model", type="primary", on_click=_add, args=(api, folders))


def main() -> None:
    st.title("Models")
    st.caption("Every model file each ComfyUI instance has, what pins it and what uses it.")
    api = client()
    if notice := st.session_state.pop("model_notice", None):
        kind, message = notice
        (st.success if kind == "success" else st.error)(escape(message))
    try:
        inventory = api.models()
    except ApiError as err:
        st.error(escape(err.message))
        return
    table = matrix(inventory)
    missing = int((table == MISSING).to_numpy().sum())
    if missing:
        st.warning(f"{missing} file{'s' if missing != 1 else ''} missing on an instance (highlighted).")
    unreachable = [i["name"] for i in inventory["instances"] if not i["reachable"]]
    if unreachable:
        st.warning(f"Not reachable now: {', '.join(unreachable)} (its files show as ?).")
    st.dataframe(table.style.map(_highlight), hide_index=True, width="stretch", key="models_table")
    if is_lead():  # the backend refuses a designer's add anyway (403): the form is not offered
        _add_form(api, inventory)


main()

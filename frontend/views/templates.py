"""Templates (leads): upload a ComfyUI workflow exported in API format with its inputs declaration, read
the validation report, publish; then each template's versions, roll back, retire and restore.

Titles and problems come from people and from ComfyUI: they are shown as text, never as Markdown/HTML.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import streamlit as st

from frontend import template_skeleton, theme
from frontend.api_client import ApiClient, ApiError
from frontend.components import escape
from frontend.context import client

PROBLEM_COLUMNS = ("field", "node_id", "class_type", "input", "instance", "message")


def _notice(kind: str, message: str) -> None:
    st.session_state["notice"] = (kind, message)


def _read_graph() -> Any:
    """The uploaded workflow file as JSON (None: none, or not JSON: said)."""
    file = st.session_state.get("w_tpl_graph_file")
    if file is None:
        return None
    data = file.getvalue()
    try:
        graph = json.loads(data)
    except ValueError:
        st.error("This file is not JSON. In ComfyUI use Workflow → Export (API).")
        return None
    fingerprint = hashlib.sha256(data).hexdigest()
    if st.session_state.get("tpl_graph_source") != fingerprint:  # a new file: a new skeleton
        st.session_state["tpl_graph_source"] = fingerprint
        st.session_state["tpl_report"] = None
        if template_skeleton.is_api_format(graph):
            first = template_skeleton.skeleton(graph, file.name)
            st.session_state["w_tpl_decl"] = json.dumps(first, indent=2, ensure_ascii=False)
    return graph


def _declaration(graph: Any) -> dict[str, Any] | None:
    """The declaration typed by the lead with the uploaded graph (None: not JSON, said as a report)."""
    try:
        doc = json.loads(st.session_state.get("w_tpl_decl") or "{}")
    except ValueError as exc:
        st.session_state["tpl_report"] = {"message": f"The declaration is not valid JSON: {exc}."}
        return None
    if not isinstance(doc, dict):
        st.session_state["tpl_report"] = {"message": "The declaration must be a JSON object."}
        return None
    if graph is not None:
        doc["graph"] = graph
    return doc


def _report_of(err: ApiError) -> dict[str, Any]:
    problems = [d.model_dump(exclude_none=True) for d in err.details]
    return {"ok": False, "message": err.message, "problems": problems}


def _validate(api: ApiClient, graph: Any) -> None:
    if (doc := _declaration(graph)) is None:
        return
    try:
        report = api.validate_template(doc)
    except ApiError as err:
        report = _report_of(err)
    st.session_state["tpl_report"] = report


def _published(publication: dict[str, Any]) -> str:
    name, version = publication["template"]["name"], publication["version"]
    if publication["created"]:
        return f"Published {name}: version {version} is live."
    return f"{name}: the same content is version {version}, now live again (no new version)."


def _save(api: ApiClient, graph: Any, *, publish: bool) -> None:
    if (doc := _declaration(graph)) is None:
        return
    name = str(doc.get("name") or "")
    exists = name in {t["name"] for t in api.templates(include_retired=True)}
    try:
        saved = api.save_template(doc, exists=exists)
        st.session_state["tpl_report"] = saved["report"]
        if publish:
            published = api.publish_template(name)
            st.session_state["tpl_report"] = published["report"]
            _notice("success", _published(published))
        else:
            _notice("success", f"Draft of {name} saved.")
    except ApiError as err:
        st.session_state["tpl_report"] = _report_of(err)


def _summary(problems: list[dict[str, Any]]) -> str:
    """The validate answer has no message of its own: its first problem says what to do."""
    if not problems:
        return "The template is not valid."
    more = f" (and {len(problems) - 1} more below)" if len(problems) > 1 else ""
    return f"The template is not valid: {problems[0].get('message')}{more}"


def _problem_table(problems: list[dict[str, Any]]) -> None:
    rows = [{c: str(p.get(c) or "") for c in PROBLEM_COLUMNS} for p in problems]
    st.dataframe(rows, hide_index=True, width="stretch")  # cells are plain text


def report_box(report: dict[str, Any] | None) -> None:
    """The validation report: problems (node, class, input, instance), warnings, each instance's verdict."""
    if not report:
        return
    problems = report.get("problems") or []
    if report.get("ok") and not problems:
        st.success("The template is valid: it can be published.", icon=":material/check_circle:")
    else:
        st.error(escape(report.get("message") or _summary(problems)), icon=":material/error:")
        if problems:
            _problem_table(problems)
    for warning in report.get("warnings") or []:
        st.warning(escape(str(warning.get("message"))), icon=":material/warning:")
    for verdict in report.get("instances") or []:
        if verdict.get("covers"):
            st.text(f"✓ {verdict['instance']} will run it")
        else:
            why = "; ".join(verdict.get("reasons") or []) or "it lacks what the template needs"
            st.text(f"✗ {verdict['instance']} cannot run it: {why}")


def editor(api: ApiClient) -> None:
    st.subheader("Publish a template")
    st.caption(
        "1. In ComfyUI: Workflow → Export (API). 2. Upload the file: a declaration of its inputs is "
        "drafted for you. 3. Edit labels, help and limits, check, then publish."
    )
    st.file_uploader("Workflow (API format JSON)", type=["json"], key="w_tpl_graph_file")
    graph = _read_graph()
    if graph is not None and template_skeleton.is_ui_format(graph):
        st.warning("This looks like a UI-format workflow: the check below says how to export it.")
    st.text_area(
        "Inputs declaration (JSON: name, title, description, inputs, outputs)",
        key="w_tpl_decl",
        height=320,
        help="The graph comes from the uploaded file; leave it out here.",
    )
    row = st.container(horizontal=True)
    row.button("Check", key="tpl_check", on_click=_validate, args=(api, graph), icon=":material/rule:")
    row.button("Save draft", key="tpl_save", on_click=_save, args=(api, graph), kwargs={"publish": False})
    row.button(
        "Save and publish",
        key="tpl_publish",
        type="primary",
        on_click=_save,
        args=(api, graph),
        kwargs={"publish": True},
        icon=":material/publish:",
    )
    report_box(st.session_state.get("tpl_report"))


def _act(api: ApiClient, action: str, name: str, version: int | None = None) -> None:
    try:
        if action == "rollback" and version is not None:
            api.rollback_template(name, version)
            _notice("success", f"{name} is back on version {version}.")
        elif action == "retire":
            api.retire_template(name)
            _notice("success", f"{name} is retired: designers no longer see it.")
        elif action == "restore":
            api.restore_template(name)
            _notice("success", f"{name} is restored.")
        elif action == "publish":
            _notice("success", _published(api.publish_template(name)))
    except ApiError as err:
        _notice("error", err.message)


def template_row(api: ApiClient, summary: dict[str, Any]) -> None:
    name = summary["name"]
    with st.container(border=True, key=f"tpl_row_{name}"):
        if summary["retired"]:
            status = "retired"
        elif summary["current_version"] is None:
            status = "draft, never published"
        else:
            status = f"version {summary['current_version']} live"
        st.markdown(f"**{escape(summary['title'])}** · `{name}` · {status}")
        if summary.get("description"):
            st.text(summary["description"])
        if summary["builtin"]:
            st.caption("Built in: published from the repository at start-up.")
            return
        row = st.container(horizontal=True)
        if summary["current_version"] is None:
            row.button("Publish", key=f"tpl_pub_{name}", on_click=_act, args=(api, "publish", name))
        elif summary["retired"]:
            row.button("Restore", key=f"tpl_restore_{name}", on_click=_act, args=(api, "restore", name))
        else:
            row.button("Retire", key=f"tpl_retire_{name}", on_click=_act, args=(api, "retire", name))
        if summary["current_version"]:
            versions(api, name, summary["current_version"])


def versions(api: ApiClient, name: str, current: int) -> None:
    with st.expander("Versions"):
        try:
            detail = api.template(name)
        except ApiError as err:
            st.caption(escape(err.message))
            return
        for info in sorted(detail.get("versions") or [], key=lambda v: -v["version"]):
            n = info["version"]
            c1, c2 = st.columns([3, 1], vertical_alignment="center")
            when = theme.local_time(info.get("created_at"))
            c1.text(f"Version {n}" + (f" · {when}" if when else "") + (" · live" if n == current else ""))
            c2.button(
                f"Roll back to {n}",
                key=f"tpl_rollback_{name}_{n}",
                disabled=n == current,
                on_click=_act,
                args=(api, "rollback", name, n),
            )


def page(api: ApiClient) -> None:
    st.title("Templates")
    st.caption("Workflows designers render with: each published template gets its own form in the studio.")
    if notice := st.session_state.get("notice"):
        kind, message = notice
        (st.error if kind == "error" else st.success)(escape(message))
        st.session_state["notice"] = None
    editor(api)
    st.divider()
    st.subheader("Templates")
    for summary in api.templates(include_retired=True):
        template_row(api, summary)


if __name__ == "__main__":
    page(client())

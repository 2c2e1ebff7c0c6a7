"""The admin page's records: recent sign-ins (successful and refused, with the reason) and the audit log,
filtered by action, outcome, designer and dates, paged, and downloaded as JSON lines."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from frontend.api_client import ApiClient

PAGE_SIZE = 50
OUTCOMES = {"All": None, "Successful": "success", "Refused": "failure"}
ANY = "Any"


def _detail(details: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in details.items())


def events_table(events: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "time (UTC)": e["created_at"][:19].replace("T", " "),
            "action": e["action"],
            "outcome": e["outcome"] + (f" ({e['reason']})" if e["reason"] else ""),
            "by": e["actor_name"] or "",
            "target": f"{e['target_type']} {e['target_id']}".strip(),
            "details": _detail(e["details"]),
            "ip": e["ip"],
        }
        for e in events
    ]
    return pd.DataFrame(rows, columns=["time (UTC)", "action", "outcome", "by", "target", "details", "ip"])


def sign_ins_tab(api: ApiClient) -> None:
    shown = st.segmented_control("Show", list(OUTCOMES), default="All", key="w_sign_ins_outcome")
    events = api.sign_ins(outcome=OUTCOMES[shown or "All"], limit=PAGE_SIZE)
    if not events:
        st.info("No sign-ins yet.")
        return
    st.dataframe(events_table(events), hide_index=True, width="stretch", key="admin_sign_ins_table")


def _day_start(day: date | None, *, next_day: bool = False) -> datetime | None:
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1 if next_day else 0), time(), tzinfo=UTC)


def filters(users: list[dict[str, Any]], actions: list[str]) -> dict[str, Any]:
    """The filters the admin chose, as the audit routes take them (`actions`: the backend's list)."""
    names = {u["id"]: u["name"] for u in users}
    c1, c2, c3, c4, c5 = st.columns(5)
    action = c1.selectbox("Action", [ANY, *actions], key="w_audit_action")
    outcome = c2.selectbox("Outcome", list(OUTCOMES), key="w_audit_outcome")
    actor = c3.selectbox("By", [ANY, *names], format_func=lambda v: names.get(v, v), key="w_audit_actor")
    since = c4.date_input("From", value=None, key="w_audit_since")
    until = c5.date_input("To (inclusive)", value=None, key="w_audit_until")
    chosen = {
        "action": None if action == ANY else action,
        "outcome": OUTCOMES[outcome],
        "actor_id": None if actor == ANY else actor,
        "since": _day_start(since),
        "until": _day_start(until, next_day=True),
    }
    return {k: v for k, v in chosen.items() if v is not None}


def _older(cursor: str) -> None:
    st.session_state["audit_cursors"] = [*st.session_state.get("audit_cursors", [None]), cursor]


def _newest() -> None:
    st.session_state["audit_cursors"] = [None]


def audit_tab(api: ApiClient, users: list[dict[str, Any]]) -> None:
    chosen = filters(users, api.audit_actions())
    if st.session_state.get("audit_filters") != chosen:  # other filters: back to the newest lines
        st.session_state["audit_filters"], st.session_state["audit_cursors"] = chosen, [None]
    cursor = st.session_state["audit_cursors"][-1]
    page = api.audit(cursor=cursor, limit=PAGE_SIZE, **chosen)
    st.download_button(
        "Download as JSON lines",
        data=lambda: api.audit_export(**chosen),
        file_name="audit.jsonl",
        mime="application/jsonl",
        key="w_audit_download",
        icon=":material/download:",
    )
    if not page["items"]:
        st.info("No audit lines match these filters.")
    else:
        st.dataframe(events_table(page["items"]), hide_index=True, width="stretch", key="admin_audit_table")
    c1, c2 = st.columns(2)
    if cursor is not None:
        c1.button("Newest lines", key="w_audit_newest", on_click=_newest)
    if page["next_cursor"]:
        c2.button("Older lines", key="w_audit_older", on_click=_older, args=(page["next_cursor"],))

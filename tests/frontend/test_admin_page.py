"""The admin page through Streamlit's AppTest against a real backend: disabling a designer ends their
session at its next request, a role change too, quotas saved, a reset link shown once, any designer's API
key revoked, sign-ins listed with refusals, the audit log filtered and paged; and a designer's Models page
without the add form."""

from __future__ import annotations

import httpx
import pandas as pd
from streamlit.testing.v1 import AppTest

from tests.frontend.test_sign_in import accounts_stack, app, password_sign_in
from tests.support.accounts import session_client
from tests.support.backend import Stack

__all__ = ["accounts_stack"]  # the fixture, imported


def admin_page(stack: Stack) -> AppTest:
    at = password_sign_in(app().run(), "hoa@studio.test")
    at.switch_page("views/admin.py").run()
    assert not at.exception, at.exception
    return at


def frames(at: AppTest, column: str) -> list[pd.DataFrame]:
    """The tables shown with this column, in page order (users: "role"; sign-ins then audit: "action")."""
    return [d.value for d in at.dataframe if column in d.value.columns]


def users(at: AppTest) -> pd.DataFrame:
    return frames(at, "role")[0].set_index("name")


def user_id(stack: Stack, name: str) -> str:
    with session_client(stack.url, "hoa@studio.test") as hoa:
        return next(u["id"] for u in hoa.get("/api/admin/users").json()["items"] if u["name"] == name)


def test_disabling_a_designer_refuses_their_next_request(accounts_stack: Stack) -> None:
    minh = session_client(accounts_stack.url, "minh@studio.test")
    assert minh.get("/api/me").status_code == 200
    at = admin_page(accounts_stack)
    assert list(users(at).index) == ["Hoa Tran", "Lan Pham", "Minh Anh", "alice", "bob"]
    uid = user_id(accounts_stack, "Minh Anh")
    at.selectbox(key="w_admin_user").set_value(uid).run()
    at.button(key=f"w_disable_{uid}").click().run()
    assert "disabled and signed out" in at.success[0].value
    assert minh.get("/api/me").status_code == 401  # the next request of the disabled designer
    assert users(at).loc["Minh Anh", "status"] == "disabled"
    at.button(key=f"w_enable_{uid}").click().run()
    assert "enabled" in at.success[0].value

    lan = session_client(accounts_stack.url, "lan@studio.test")
    lan_id = user_id(accounts_stack, "Lan Pham")
    at.selectbox(key="w_admin_user").set_value(lan_id).run()
    at.selectbox(key=f"w_role_{lan_id}").set_value("designer").run()
    at.button(key=f"w_role_save_{lan_id}").click().run()
    assert lan.get("/api/me").status_code == 401  # a role change ends the sessions too
    at.number_input(key=f"w_quota_jobs_{lan_id}").set_value(2).run()
    at.button(key=f"w_quota_save_{lan_id}").click().run()
    row = users(at).loc["Lan Pham"]
    assert (row["role"], row["max active jobs"]) == ("designer", "2")
    at.button(key=f"w_link_{lan_id}").click().run()
    assert "?reset=" in at.code[0].value
    at.button(key="w_link_dismiss").click().run()
    assert not at.code  # shown once
    minh.close()
    lan.close()


def test_keys_sign_ins_and_the_audit_log(accounts_stack: Stack) -> None:
    from tests.support.accounts import sign_in

    assert sign_in(accounts_stack.url, "minh@studio.test", "wrong password").status_code == 401
    with session_client(accounts_stack.url, "minh@studio.test") as minh:
        created = minh.post("/api/keys", json={"name": "Quote tool", "scopes": ["read"]}).json()
    at = admin_page(accounts_stack)
    at.button(key=f"w_admin_revoke_{created['id']}").click().run()
    assert "Quote tool is revoked" in at.success[0].value
    with httpx.Client(base_url=accounts_stack.url, headers={"x-api-key": created["key"]}) as tool:
        assert tool.get("/api/jobs").status_code == 401

    sign_ins = frames(at, "action")[0]
    assert "failure (wrong_password)" in list(sign_ins["outcome"])
    at.segmented_control(key="w_sign_ins_outcome").set_value("Refused").run()
    assert set(frames(at, "action")[0]["outcome"]) == {"failure (wrong_password)"}

    audit = frames(at, "action")[1]
    assert {"sign_in", "key_created", "key_revoked"} <= set(audit["action"])
    assert "share_link_revoked" in at.selectbox(key="w_audit_action").options  # the backend's whole list
    at.selectbox(key="w_audit_action").set_value("key_revoked").run()
    audit = frames(at, "action")[1]
    assert list(audit["action"]) == ["key_revoked"] and list(audit["by"]) == ["Hoa Tran"]
    assert at.download_button(key="w_audit_download").label == "Download as JSON lines"
    at.selectbox(key="w_audit_action").set_value("template_retired").run()
    assert any("No audit lines match" in i.value for i in at.info)
    assert not at.exception


def test_a_designer_s_models_page_has_no_add_form(accounts_stack: Stack) -> None:
    at = password_sign_in(app().run(), "minh@studio.test")
    at.switch_page("views/models.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Models"
    assert "Add a model (leads)" not in [e.label for e in at.expander]
    lead = password_sign_in(app().run(), "lan@studio.test")
    lead.switch_page("views/models.py").run()
    assert "Add a model (leads)" in [e.label for e in lead.expander]

"""The Projects page and the gallery's project and favourite tools through Streamlit's AppTest, against
a real backend and ComfyUI on loopback: create a project, file renders and mark favourites from the
gallery, filter by both, share a selection (the link works until revoked), prepare the ZIP, delete."""

from __future__ import annotations

import io
import zipfile

import httpx
from streamlit.testing.v1 import AppTest

from tests.frontend.conftest import signed_in, texts
from tests.support.backend import Stack


def _render(stack: Stack, prompts: list[str]) -> list[dict]:
    with stack.client() as c:
        ids = [c.post("/api/jobs", json={"prompt": p, "steps": 2, "width": 256, "height": 256}).json()["id"]
               for p in prompts]  # fmt: skip
        stack.drain()
        return [c.get(f"/api/jobs/{i}").json() for i in ids]


def _shown_prompts(at: AppTest) -> list[str]:
    return [t for t in texts(at).splitlines() if t.startswith("terrace")]


def test_projects_are_made_filled_from_the_gallery_shared_and_zipped(ui_stack: Stack) -> None:
    first, second = _render(ui_stack, ["terrace with palms", "terrace at dusk"])
    at = signed_in()
    at.switch_page("views/projects.py").run()
    assert not at.exception, at.exception
    assert "No projects yet" in at.info[0].value
    at.text_input(key="w_project_name").input("Rooftop bar")
    at.text_input(key="w_project_client").input("Saigon Hospitality")
    at.text_input(key="w_project_room").input("Terrace")
    at.button(key="FormSubmitter:new_project-Create project").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Rooftop bar created" in at.success[0].value.replace("\\", "")
    project_id = at.session_state["project_id"]

    at.switch_page("views/gallery.py").run()
    assert not at.exception, at.exception
    at.multiselect(key=f"gp_{first['id']}").select(project_id).run()
    at.button(key=f"fav_{second['id']}").click().run()
    assert not at.exception, at.exception
    with ui_stack.client() as c:
        listed = {j["id"]: j for j in c.get("/api/jobs").json()["items"]}
    assert listed[first["id"]]["projects"] == [project_id] and listed[second["id"]]["favourite"] is True
    at.toggle(key="g_favourite").set_value(True).run()
    assert _shown_prompts(at) == ["terrace at dusk"]
    at.toggle(key="g_favourite").set_value(False).run()
    at.selectbox(key="g_project").select("Rooftop bar").run()
    assert _shown_prompts(at) == ["terrace with palms"]

    at.switch_page("views/projects.py").run()
    assert not at.exception, at.exception
    image = first["images"][0]
    assert len(at.checkbox) == 1
    at.checkbox(key=f"pick_{image['id']}").check().run()
    at.text_input(key="w_share_title").input("Terrace options")
    at.button(key="share_create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    url = at.code[0].value
    page = httpx.get(url)
    assert page.status_code == 200 and "Terrace options" in page.text and image["id"] in page.text
    assert "terrace with palms" not in page.text  # no prompt on the client's page
    link_id = ui_stack.client().get("/api/share-links").json()["items"][0]["id"]
    assert "Terrace options" in "\n".join(m.value for m in at.markdown)

    at.button(key="zip_prepare").click().run()
    ready = at.session_state["project_zip"]
    names = zipfile.ZipFile(io.BytesIO(ready["data"])).namelist()
    assert names == [f"render-{first['id'][:8]}-1-seed{first['seed']}.png", "contact-sheet.png"]
    assert ready["what"] == "1 selected renders"

    at.button(key=f"revoke_{link_id}").click().run()
    assert not at.exception, at.exception
    assert httpx.get(url).status_code == 404
    at.button(key="project_delete").click().run()
    assert not at.exception, at.exception
    assert "deleted" in at.success[0].value and "No projects yet" in at.info[0].value

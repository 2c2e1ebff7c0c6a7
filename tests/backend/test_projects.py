"""Projects on both databases: a designer's own (someone else's is a 404), renders filed in them and
marked as favourites, and the gallery's filters on the job list."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import job_body
from tests.support.api import assert_error
from tests.support.backend import OTHER_TOKEN, Stack

pytestmark = pytest.mark.comfyui


def rendered(c: httpx.Client, stack: Stack, n: int) -> list[dict]:
    ids = [c.post("/api/jobs", json=job_body(steps=2, width=256, height=256)).json()["id"] for _ in range(n)]
    stack.drain()
    return [c.get(f"/api/jobs/{i}").json() for i in ids]


def test_a_designer_creates_renames_lists_and_deletes_projects(api_stack: Stack) -> None:
    with api_stack.client() as alice, api_stack.client(OTHER_TOKEN) as bob:
        r = alice.post(
            "/api/projects", json={"name": "Nguyen apartment", "client": "Mai Nguyen", "room": "Living"}
        )
        assert r.status_code == 201, r.text
        project = r.json()
        assert project["renders"] == 0 and project["cover_url"] is None
        assert_error(alice.post("/api/projects", json={"name": "Nguyen apartment"}), 409, "project_exists")
        assert bob.post("/api/projects", json={"name": "Nguyen apartment"}).status_code == 201  # his own
        other = alice.post("/api/projects", json={"name": "Hotel lobby"}).json()
        assert_error(alice.patch(f"/api/projects/{other['id']}", json={"name": "Nguyen apartment"}), 409,
                     "project_exists")  # fmt: skip
        r = alice.patch(f"/api/projects/{project['id']}", json={"room": "Bedroom"})
        assert r.status_code == 200 and r.json()["room"] == "Bedroom" and r.json()["client"] == "Mai Nguyen"
        names = [p["name"] for p in alice.get("/api/projects").json()["items"]]
        assert names == ["Hotel lobby", "Nguyen apartment"]  # newest first, only hers
        for request in (bob.get, bob.delete):
            assert_error(request(f"/api/projects/{project['id']}"), 404, "project_not_found")
        assert_error(
            bob.patch(f"/api/projects/{project['id']}", json={"room": "x"}), 404, "project_not_found"
        )
        assert_error(alice.get("/api/projects/not-an-id"), 404, "project_not_found")
        assert alice.post("/api/projects", json={"name": "  "}).status_code == 422
        assert alice.delete(f"/api/projects/{project['id']}").status_code == 204
        assert_error(alice.get(f"/api/projects/{project['id']}"), 404, "project_not_found")


def test_renders_are_filed_marked_and_filtered_in_the_gallery(stack: Stack) -> None:
    with stack.client() as alice, stack.client(OTHER_TOKEN) as bob:
        first, second, third = rendered(alice, stack, 3)
        project = alice.post("/api/projects", json={"name": "Beach house"}).json()
        pid = project["id"]
        for job in (first, second):
            assert alice.put(f"/api/projects/{pid}/jobs/{job['id']}").status_code == 204
        assert alice.put(f"/api/projects/{pid}/jobs/{first['id']}").status_code == 204  # again: no change
        assert alice.put(f"/api/jobs/{second['id']}/favourite").status_code == 204
        assert alice.put(f"/api/jobs/{third['id']}/favourite").status_code == 204
        assert alice.delete(f"/api/jobs/{third['id']}/favourite").status_code == 204

        def listed(**params: object) -> list[str]:
            return [j["id"] for j in alice.get("/api/jobs", params=params).json()["items"]]

        assert listed(project=pid) == [second["id"], first["id"]]
        assert listed(favourite="true") == [second["id"]]
        assert listed(project=pid, favourite="false") == [first["id"]]
        malformed = assert_error(alice.get("/api/jobs", params={"project": "x"}), 422, "invalid_input")
        assert malformed["details"][0]["field"] == "project"  # a project's id is a UUID
        assert listed(project=str(uuid.uuid4())) == []  # well formed, but no project of hers
        items = {j["id"]: j for j in alice.get("/api/jobs").json()["items"]}
        assert items[second["id"]]["favourite"] is True and items[second["id"]]["projects"] == [pid]
        assert items[third["id"]]["favourite"] is False and items[third["id"]]["projects"] == []
        shown = alice.get(f"/api/projects/{pid}").json()
        assert shown["renders"] == 2 and shown["cover_url"] == second["images"][0]["thumbnail_url"]

        assert alice.delete(f"/api/projects/{pid}/jobs/{first['id']}").status_code == 204
        assert listed(project=pid) == [second["id"]]
        # Bob can neither file Alice's render nor touch her project, nor mark her render.
        his = bob.post("/api/projects", json={"name": "Beach house"}).json()["id"]
        assert_error(bob.put(f"/api/projects/{his}/jobs/{first['id']}"), 404, "job_not_found")
        mine = rendered(bob, stack, 1)[0]
        assert_error(bob.put(f"/api/projects/{pid}/jobs/{mine['id']}"), 404, "project_not_found")
        assert_error(bob.put(f"/api/jobs/{first['id']}/favourite"), 404, "job_not_found")
        assert bob.get("/api/jobs", params={"project": pid}).json()["items"] == []
        # Deleting the project keeps its renders in the gallery.
        assert alice.delete(f"/api/projects/{pid}").status_code == 204
        assert second["id"] in listed()

"""The typed client's projects, favourites, share links and ZIPs against the running stack."""

from __future__ import annotations

import asyncio
import io
import zipfile
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from studio_client import AsyncStudioClient, StudioClient, StudioError
from tests.factories import job_body
from tests.support.backend import DEMO_TOKEN, Stack

pytestmark = pytest.mark.comfyui


def test_projects_favourites_share_links_and_zips(stack: Stack) -> None:
    with StudioClient(stack.url, DEMO_TOKEN) as studio:
        jobs = [studio.create_job(**job_body(steps=2, width=256, height=256)) for _ in range(2)]
        stack.drain()
        project = studio.create_project("Saigon loft", client="Linh Pham", room="Kitchen")
        assert studio.update_project(project.id, room="Dining").room == "Dining"
        studio.file_job(project.id, jobs[0].id)
        studio.file_job(project.id, jobs[1].id)
        studio.file_job(project.id, jobs[1].id, filed=False)
        studio.set_favourite(jobs[1].id)
        assert [j.id for j in studio.list_jobs(project=project.id).items] == [jobs[0].id]
        page = studio.list_jobs(favourite=True)
        assert [j.id for j in page.items] == [jobs[1].id] and page.items[0].favourite is True
        assert [j.id for j in studio.list_jobs(favourite=False).items] == [jobs[0].id]
        assert page.items[0].projects == [] and studio.list_jobs(project=project.id).items[0].projects == [
            project.id
        ]
        assert [p.renders for p in studio.projects()] == [1]

        link = studio.create_share_link(
            project_id=project.id, expires_at=datetime.now(UTC) + timedelta(days=2)
        )
        assert link.url is not None and link.active and link.scope == "project"
        assert httpx.get(link.url).status_code == 200
        assert studio.share_links(project.id)[0].access_count == 1
        assert studio.revoke_share_link(link.id).active is False
        assert httpx.get(link.url).status_code == 404
        image_id = studio.get_job(jobs[1].id).images[0].id
        selection = studio.create_share_link(image_ids=[image_id], title="Option B")
        assert selection.title == "Option B" and selection.image_ids == [image_id]

        names = zipfile.ZipFile(io.BytesIO(studio.download_zip(project_id=project.id))).namelist()
        assert names[-1] == "contact-sheet.png" and len(names) == 2
        names = zipfile.ZipFile(io.BytesIO(studio.download_zip(image_ids=[image_id]))).namelist()
        assert len(names) == 2
        studio.delete_project(project.id)
        with pytest.raises(StudioError) as err:
            studio.update_project(project.id, name="Gone")
        assert err.value.code == "project_not_found" and err.value.status == 404


async def test_the_async_client_does_the_same(stack: Stack) -> None:
    async with AsyncStudioClient(stack.url, DEMO_TOKEN) as studio:
        job = await studio.create_job(**job_body(steps=2, width=256, height=256))
        await asyncio.to_thread(stack.drain)
        project = await studio.create_project("Dalat cabin", room="Bedroom")
        assert (await studio.update_project(project.id, client="Quang Le")).client == "Quang Le"
        await studio.file_job(project.id, job.id)
        await studio.set_favourite(job.id)
        page = await studio.list_jobs(project=project.id, favourite=True)
        assert [j.id for j in page.items] == [job.id] and page.items[0].projects == [project.id]
        assert [p.name for p in await studio.projects()] == ["Dalat cabin"]
        link = await studio.create_share_link(project_id=project.id, title="Bedroom, two options")
        assert link.url and (await studio.share_links(project.id))[0].title == "Bedroom, two options"
        async with httpx.AsyncClient() as browser:
            assert (await browser.get(link.url)).status_code == 200
            assert not (await studio.revoke_share_link(link.id)).active
            assert (await browser.get(link.url)).status_code == 404
        names = zipfile.ZipFile(io.BytesIO(await studio.download_zip(project_id=project.id))).namelist()
        assert names[-1] == "contact-sheet.png" and len(names) == 2
        await studio.set_favourite(job.id, False)
        await studio.file_job(project.id, job.id, filed=False)
        assert (await studio.list_jobs(project=project.id)).items == []
        await studio.delete_project(project.id)
        assert await studio.projects() == []

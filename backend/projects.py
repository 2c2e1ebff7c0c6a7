"""Projects: a designer's own (someone else's is not found), the renders filed in them, favourites, and
the two filters the gallery adds to its job list (`?project=` and `?favourite=true`).

A render is a job's images: filing or marking a job files or marks every image of it. Only images of
role `result` are a project's renders (a pass is an intermediate picture).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.errors import Conflict, NotFound
from backend.models import Image, Job, JobStatus
from backend.project_models import Favourite, Project, ProjectJob, ShareLink
from backend.project_schemas import ProjectOut
from backend.schemas import JobOut, is_entity_id


def project_not_found(project_id: str) -> NotFound:
    return NotFound(f"No project {project_id!r}.", code="project_not_found")


async def own_project(session: AsyncSession, designer_id: str, project_id: str) -> Project:
    project = await session.get(Project, project_id) if is_entity_id(project_id) else None
    if project is None or project.designer_id != designer_id:
        raise project_not_found(project_id)
    return project


async def own_job(session: AsyncSession, designer_id: str, job_id: str) -> Job:
    job = await session.get(Job, job_id) if is_entity_id(job_id) else None
    if job is None or job.designer_id != designer_id:
        raise NotFound(f"No job {job_id!r}.", code="job_not_found")
    return job


async def check_name_free(session: AsyncSession, designer_id: str, name: str, but: str | None = None) -> None:
    query = select(Project.id).where(Project.designer_id == designer_id, Project.name == name)
    found = await session.scalar(query)
    if found is not None and found != but:
        raise Conflict(f"You already have a project named {name!r}.", code="project_exists")


async def flush_or_conflict(session: AsyncSession, name: str) -> None:
    """Write now: the same name made at once by another request is the same conflict."""
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"You already have a project named {name!r}.", code="project_exists") from exc


def _renders_of(project_ids: list[str]) -> Select[str, int]:
    return (
        select(ProjectJob.project_id, func.count().label("n"))
        .where(ProjectJob.project_id.in_(project_ids))
        .group_by(ProjectJob.project_id)
    )


async def project_outs(session: AsyncSession, projects: Sequence[Project]) -> list[ProjectOut]:
    """The projects with their render counts and the thumbnail of their newest render (two queries)."""
    ids = [p.id for p in projects]
    counts = {row.project_id: row.n for row in await session.execute(_renders_of(ids))} if ids else {}
    covers: dict[str, str] = {}
    if ids:
        rows = await session.execute(
            select(ProjectJob.project_id, Image.id)
            .join(Image, Image.job_id == ProjectJob.job_id)
            .join(Job, Job.id == ProjectJob.job_id)
            .where(ProjectJob.project_id.in_(ids), Image.role == "result")
            .order_by(Job.created_at, Job.id, Image.index.desc())
        )
        # The last row of a project wins: the first image of its newest render (as the gallery orders them).
        covers = {row.project_id: f"/api/images/{row.id}/thumbnail" for row in rows}
    return [
        ProjectOut(
            id=p.id,
            name=p.name,
            client=p.client,
            room=p.room,
            created_at=p.created_at,
            renders=int(counts.get(p.id, 0)),
            cover_url=covers.get(p.id),
        )
        for p in projects
    ]


async def list_projects(session: AsyncSession, designer_id: str) -> list[Project]:
    query = select(Project).where(Project.designer_id == designer_id).order_by(Project.created_at.desc())
    return list(await session.scalars(query))


async def delete_project(session: AsyncSession, project: Project) -> None:
    """The project, what was filed in it and its share links (the renders stay in the gallery)."""
    await session.execute(delete(ProjectJob).where(ProjectJob.project_id == project.id))
    await session.execute(delete(ShareLink).where(ShareLink.project_id == project.id))
    await session.delete(project)


async def file_job(session: AsyncSession, project: Project, job: Job) -> None:
    """File the render in the project (again: nothing changes)."""
    key = {"project_id": project.id, "job_id": job.id}
    if await session.get(ProjectJob, (project.id, job.id)) is None:
        session.add(ProjectJob(**key))


async def unfile_job(session: AsyncSession, project: Project, job: Job) -> None:
    await session.execute(
        delete(ProjectJob).where(ProjectJob.project_id == project.id, ProjectJob.job_id == job.id)
    )


async def set_favourite(session: AsyncSession, job: Job, favourite: bool) -> None:
    if not favourite:
        await session.execute(delete(Favourite).where(Favourite.job_id == job.id))
    elif await session.get(Favourite, job.id) is None:
        session.add(Favourite(job_id=job.id, designer_id=job.designer_id))


def filter_jobs(query: Select[Any], project_id: str | None, favourite: bool | None) -> Select[Any]:
    """The gallery's filters on its job list: filed in `project_id`; marked (or not) as a favourite."""
    if project_id is not None:
        filed = select(ProjectJob.job_id).where(ProjectJob.project_id == project_id)
        query = query.where(Job.id.in_(filed))
    if favourite is not None:
        marked = Job.id.in_(select(Favourite.job_id))
        query = query.where(marked if favourite else ~marked)
    return query


async def organisation(
    session: AsyncSession, job_ids: Sequence[str]
) -> tuple[set[str], dict[str, list[str]]]:
    """Of these jobs: those marked as favourites, and the projects each is filed in."""
    if not job_ids:
        return set(), {}
    ids = list(job_ids)
    marked = set(await session.scalars(select(Favourite.job_id).where(Favourite.job_id.in_(ids))))
    filed: dict[str, list[str]] = {}
    rows = await session.execute(
        select(ProjectJob.job_id, ProjectJob.project_id).where(ProjectJob.job_id.in_(ids))
    )
    for row in rows:
        filed.setdefault(row.job_id, []).append(row.project_id)
    return marked, filed


async def project_images(session: AsyncSession, project_id: str) -> list[Image]:
    """The renders filed in the project, newest first (a job's images in their order)."""
    query = (
        select(Image)
        .join(Job, Job.id == Image.job_id)
        .join(ProjectJob, ProjectJob.job_id == Job.id)
        .where(ProjectJob.project_id == project_id, Image.role == "result", Job.status == JobStatus.succeeded)
        .order_by(Job.created_at.desc(), Job.id, Image.index)
    )
    return list(await session.scalars(query))


async def own_images(session: AsyncSession, designer_id: str, image_ids: Sequence[str]) -> list[Image]:
    """These images of the designer's, in the order asked; one that is not theirs is not found."""
    ids = list(dict.fromkeys(image_ids))
    found = {
        i.id: i
        for i in await session.scalars(
            select(Image).where(Image.id.in_(ids), Image.designer_id == designer_id)
        )
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"No image {missing[0]!r}.", code="image_not_found")
    return [found[i] for i in ids]


async def with_organisation(session: AsyncSession, items: list[JobOut]) -> list[JobOut]:
    """The jobs of a list, each with whether it is a favourite and the projects it is filed in."""
    marked, filed = await organisation(session, [j.id for j in items])
    return [
        j.model_copy(update={"favourite": j.id in marked, "projects": filed.get(j.id, [])}) for j in items
    ]

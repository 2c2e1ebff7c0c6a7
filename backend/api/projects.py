"""Projects: create, list, read, rename, delete (a designer's own; someone else's is a 404), file and
unfile renders (a job and its images), mark favourites. The gallery's `?project=` and `?favourite=`
filters sit on `GET /api/jobs` (`api/jobs.py`, through `backend.projects.filter_jobs`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy.ext.asyncio import AsyncSession

from backend import projects
from backend.api.deps import CurrentDesigner, ReadSessionDep, SessionDep
from backend.db import writing
from backend.project_models import Project
from backend.project_schemas import ProjectCreate, ProjectList, ProjectOut, ProjectUpdate

router = APIRouter(prefix="/api", tags=["projects"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid token"},
    404: {"description": "no such project (or job) for this designer"},
}


async def _one(session: AsyncSession, project: Project) -> ProjectOut:
    return (await projects.project_outs(session, [project]))[0]


@router.post(
    "/projects",
    status_code=201,
    response_model=ProjectOut,
    responses={**ERRORS, 409: {"description": "a project of this name exists"}},
    summary="Create a project",
)
async def create_project(body: ProjectCreate, session: SessionDep, designer: CurrentDesigner) -> ProjectOut:
    async with writing(session):
        await projects.check_name_free(session, designer.id, body.name)
        project = Project(designer_id=designer.id, name=body.name, client=body.client, room=body.room)
        session.add(project)
        await projects.flush_or_conflict(session, body.name)
        return await _one(session, project)


@router.get("/projects", response_model=ProjectList, responses=ERRORS, summary="The designer's projects")
async def list_projects(session: ReadSessionDep, designer: CurrentDesigner) -> ProjectList:
    mine = await projects.list_projects(session, designer.id)
    return ProjectList(items=await projects.project_outs(session, mine))


@router.get("/projects/{project_id}", response_model=ProjectOut, responses=ERRORS, summary="One project")
async def read_project(project_id: str, session: ReadSessionDep, designer: CurrentDesigner) -> ProjectOut:
    return await _one(session, await projects.own_project(session, designer.id, project_id))


@router.patch(
    "/projects/{project_id}",
    response_model=ProjectOut,
    responses={**ERRORS, 409: {"description": "a project of this name exists"}},
    summary="Rename a project or change its client or room",
)
async def update_project(
    project_id: str, body: ProjectUpdate, session: SessionDep, designer: CurrentDesigner
) -> ProjectOut:
    async with writing(session):
        project = await projects.own_project(session, designer.id, project_id)
        if body.name is not None and body.name != project.name:
            await projects.check_name_free(session, designer.id, body.name, but=project.id)
            project.name = body.name
        project.client = project.client if body.client is None else body.client
        project.room = project.room if body.room is None else body.room
        await projects.flush_or_conflict(session, project.name)
        return await _one(session, project)


@router.delete(
    "/projects/{project_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Delete a project and its share links (its renders stay in the gallery)",
)
async def delete_project(project_id: str, session: SessionDep, designer: CurrentDesigner) -> Response:
    async with writing(session):
        await projects.delete_project(session, await projects.own_project(session, designer.id, project_id))
    return Response(status_code=204)


@router.put(
    "/projects/{project_id}/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="File a render (the job's images) in a project",
)
async def file_job(project_id: str, job_id: str, session: SessionDep, designer: CurrentDesigner) -> Response:
    async with writing(session):
        job = await projects.own_job(session, designer.id, job_id)
        await projects.file_job(session, await projects.own_project(session, designer.id, project_id), job)
    return Response(status_code=204)


@router.delete(
    "/projects/{project_id}/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Take a render out of a project",
)
async def unfile_job(
    project_id: str, job_id: str, session: SessionDep, designer: CurrentDesigner
) -> Response:
    async with writing(session):
        job = await projects.own_job(session, designer.id, job_id)
        await projects.unfile_job(session, await projects.own_project(session, designer.id, project_id), job)
    return Response(status_code=204)


@router.put(
    "/jobs/{job_id}/favourite",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Mark a render as a favourite",
)
async def mark_favourite(job_id: str, session: SessionDep, designer: CurrentDesigner) -> Response:
    async with writing(session):
        await projects.set_favourite(session, await projects.own_job(session, designer.id, job_id), True)
    return Response(status_code=204)


@router.delete(
    "/jobs/{job_id}/favourite",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
    summary="Unmark a favourite",
)
async def unmark_favourite(job_id: str, session: SessionDep, designer: CurrentDesigner) -> Response:
    async with writing(session):
        await projects.set_favourite(session, await projects.own_job(session, designer.id, job_id), False)
    return Response(status_code=204)

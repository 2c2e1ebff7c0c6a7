"""The clients' projects, favourites, share links and ZIP downloads: `ProjectMethods` is mixed into
`client.StudioClient`, `AsyncProjectMethods` into `aio.AsyncStudioClient` (the same calls, awaited)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from studio_client.models import Project, ShareLink

if TYPE_CHECKING:
    import httpx


def share_body(
    project_id: str | None,
    image_ids: list[str] | None,
    title: str | None,
    expires_in_days: int,
    expires_at: datetime | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"project_id": project_id, "image_ids": image_ids, "title": title}
    body |= {"expires_in_days": expires_in_days, "expires_at": expires_at and expires_at.isoformat()}
    return {k: v for k, v in body.items() if v is not None}


def zip_body(image_ids: list[str] | None, project_id: str | None) -> dict[str, Any]:
    return {"image_ids": image_ids} if image_ids is not None else {"project_id": project_id}


class ProjectMethods:
    """A designer's projects (renders filed in them), favourites, clients' share links and ZIPs."""

    if TYPE_CHECKING:

        def request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response: ...

        def _get(self, path: str, **params: Any) -> Any: ...

    def projects(self) -> list[Project]:
        return [Project.model_validate(p) for p in self._get("/api/projects")["items"]]

    def create_project(self, name: str, *, client: str = "", room: str = "") -> Project:
        """A new project (not retried once sent: a second one would be refused as a duplicate name)."""
        body = {"name": name, "client": client, "room": room}
        return Project.model_validate(
            self.request("POST", "/api/projects", idempotent=False, json=body).json()
        )

    def update_project(self, project_id: str, **fields: str) -> Project:
        """Change its name, client or room (only the fields given)."""
        r = self.request("PATCH", f"/api/projects/{project_id}", idempotent=True, json=fields)
        return Project.model_validate(r.json())

    def delete_project(self, project_id: str) -> None:
        """The project and its share links go; its renders stay in the gallery."""
        self.request("DELETE", f"/api/projects/{project_id}", idempotent=True)

    def file_job(self, project_id: str, job_id: str, *, filed: bool = True) -> None:
        """File a render (a job's images) in a project, or take it out (`filed=False`)."""
        method = "PUT" if filed else "DELETE"
        self.request(method, f"/api/projects/{project_id}/jobs/{job_id}", idempotent=True)

    def set_favourite(self, job_id: str, favourite: bool = True) -> None:
        self.request("PUT" if favourite else "DELETE", f"/api/jobs/{job_id}/favourite", idempotent=True)

    def share_links(self, project_id: str | None = None) -> list[ShareLink]:
        params = {"project_id": project_id} if project_id else {}
        return [ShareLink.model_validate(x) for x in self._get("/api/share-links", **params)["items"]]

    def create_share_link(
        self,
        *,
        project_id: str | None = None,
        image_ids: list[str] | None = None,
        title: str | None = None,
        expires_in_days: int = 14,
        expires_at: datetime | None = None,
    ) -> ShareLink:
        """A read-only link for a client to a project or a selection of images; its `url` is in this
        answer only (not retried once sent: a retry would make a second link)."""
        body = share_body(project_id, image_ids, title, expires_in_days, expires_at)
        r = self.request("POST", "/api/share-links", idempotent=False, json=body)
        return ShareLink.model_validate(r.json())

    def revoke_share_link(self, link_id: str) -> ShareLink:
        r = self.request("DELETE", f"/api/share-links/{link_id}", idempotent=True)
        return ShareLink.model_validate(r.json())

    def download_zip(self, *, image_ids: list[str] | None = None, project_id: str | None = None) -> bytes:
        """A ZIP of the full-size PNGs and contact-sheet.png: a selection of images or a whole project."""
        body = zip_body(image_ids, project_id)
        return self.request("POST", "/api/images/zip", idempotent=True, json=body).content


class AsyncProjectMethods:
    """`ProjectMethods`, awaited."""

    if TYPE_CHECKING:

        async def request(
            self, method: str, path: str, *, idempotent: bool, **kwargs: Any
        ) -> httpx.Response: ...

        async def _get(self, path: str, **params: Any) -> Any: ...

    async def projects(self) -> list[Project]:
        return [Project.model_validate(p) for p in (await self._get("/api/projects"))["items"]]

    async def create_project(self, name: str, *, client: str = "", room: str = "") -> Project:
        body = {"name": name, "client": client, "room": room}
        r = await self.request("POST", "/api/projects", idempotent=False, json=body)
        return Project.model_validate(r.json())

    async def update_project(self, project_id: str, **fields: str) -> Project:
        r = await self.request("PATCH", f"/api/projects/{project_id}", idempotent=True, json=fields)
        return Project.model_validate(r.json())

    async def delete_project(self, project_id: str) -> None:
        await self.request("DELETE", f"/api/projects/{project_id}", idempotent=True)

    async def file_job(self, project_id: str, job_id: str, *, filed: bool = True) -> None:
        method = "PUT" if filed else "DELETE"
        await self.request(method, f"/api/projects/{project_id}/jobs/{job_id}", idempotent=True)

    async def set_favourite(self, job_id: str, favourite: bool = True) -> None:
        method = "PUT" if favourite else "DELETE"
        await self.request(method, f"/api/jobs/{job_id}/favourite", idempotent=True)

    async def share_links(self, project_id: str | None = None) -> list[ShareLink]:
        params = {"project_id": project_id} if project_id else {}
        items = (await self._get("/api/share-links", **params))["items"]
        return [ShareLink.model_validate(x) for x in items]

    async def create_share_link(
        self,
        *,
        project_id: str | None = None,
        image_ids: list[str] | None = None,
        title: str | None = None,
        expires_in_days: int = 14,
        expires_at: datetime | None = None,
    ) -> ShareLink:
        body = share_body(project_id, image_ids, title, expires_in_days, expires_at)
        r = await self.request("POST", "/api/share-links", idempotent=False, json=body)
        return ShareLink.model_validate(r.json())

    async def revoke_share_link(self, link_id: str) -> ShareLink:
        r = await self.request("DELETE", f"/api/share-links/{link_id}", idempotent=True)
        return ShareLink.model_validate(r.json())

    async def download_zip(
        self, *, image_ids: list[str] | None = None, project_id: str | None = None
    ) -> bytes:
        body = zip_body(image_ids, project_id)
        return (await self.request("POST", "/api/images/zip", idempotent=True, json=body)).content

"""The tables of projects and sharing (migration 0009): Project, ProjectJob (a render filed in a project),
Favourite (a render a designer marked) and ShareLink (a client's read-only link).

A render is a job's images: filing or favouriting a job does it for all of them. A share link's token is
stored as its SHA-256 only; its scope is a project (what is filed in it when the link is opened) or a
selection of image ids. Every use of a link is a line of the audit log (`share_link_used`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.models import Base, new_id, utcnow


class Project(Base):
    """A client's room (or any set of renders) a designer files renders into."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("designer_id", "name", name="uq_projects_designer_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    client: Mapped[str] = mapped_column(String(100), default="")
    room: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectJob(Base):
    """A render (a job and its images) filed in a project; a job may sit in several projects."""

    __tablename__ = "project_jobs"

    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    filed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Favourite(Base):
    """A render its designer marked as a favourite."""

    __tablename__ = "favourites"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShareLink(Base):
    """A read-only link for a client, without an account: a project, or a selection of images
    (`image_ids`); it ends at `expires_at` or when revoked."""

    __tablename__ = "share_links"
    __table_args__ = (Index("ix_share_links_designer_created", "designer_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    designer_id: Mapped[str] = mapped_column(ForeignKey("designers.id"))
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), default=None, index=True
    )
    image_ids: Mapped[list[Any] | None] = mapped_column(JSON, default=None, doc="a selection's images")
    title: Mapped[str] = mapped_column(String(100), doc="shown on the page")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    access_count: Mapped[int] = mapped_column(Integer, default=0)
    last_access_at: Mapped[datetime | None] = mapped_column(default=None)

"""projects and sharing: projects, renders filed in them, favourites, clients' share links

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 06:00:00.000000

A render is a job's images: `project_jobs` files a job in a project, `favourites` marks one. A
`share_links` row is a client's read-only link to a project or a selection of image ids: only the
SHA-256 of its token is kept, with its expiry, revocation and use count; each use is an audit event.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("designer_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("room", sa.String(length=100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["designer_id"], ["designers.id"], name=op.f("fk_projects_designer_id_designers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("designer_id", "name", name="uq_projects_designer_name"),
    )
    op.create_index(op.f("ix_projects_designer_id"), "projects", ["designer_id"])
    op.create_table(
        "project_jobs",
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("filed_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_jobs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_project_jobs_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("project_id", "job_id", name=op.f("pk_project_jobs")),
    )
    op.create_index(op.f("ix_project_jobs_job_id"), "project_jobs", ["job_id"])
    op.create_table(
        "favourites",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("designer_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_favourites_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["designer_id"], ["designers.id"], name=op.f("fk_favourites_designer_id_designers")
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_favourites")),
    )
    op.create_index(op.f("ix_favourites_designer_id"), "favourites", ["designer_id"])
    op.create_table(
        "share_links",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("designer_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=True),
        sa.Column("image_ids", sa.JSON(), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("access_count", sa.Integer(), nullable=False),
        sa.Column("last_access_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["designer_id"], ["designers.id"], name=op.f("fk_share_links_designer_id_designers")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_share_links_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_share_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_share_links_token_hash")),
    )
    op.create_index(op.f("ix_share_links_project_id"), "share_links", ["project_id"])
    op.create_index("ix_share_links_designer_created", "share_links", ["designer_id", "created_at"])


def downgrade() -> None:
    op.drop_table("share_links")
    op.drop_table("favourites")
    op.drop_table("project_jobs")
    op.drop_table("projects")

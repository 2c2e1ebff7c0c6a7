"""templates and their versions; jobs pin a template version and are claimed by lane; designer roles

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 02:20:00.000000

Every render is a template's: `templates` (name, owner, the current version, a draft) and immutable
`template_versions` (the graph, its declared inputs and outputs, what it needs, the report it passed and
the lane its jobs are claimed in). A job pins the version it ran and is claimed by `lane` (the built-ins
keep the lanes `text` and `sketch`, which existing rows take from their kind). Images say whether they are
a result or an intermediate pass. Designers gain a role: designer, lead or admin.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("designers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="designer")
        )
    op.create_table(
        "templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("preview_image_id", sa.String(length=36), nullable=True),
        sa.Column("draft", sa.JSON(), nullable=True),
        sa.Column("draft_report", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["designers.id"], name=op.f("fk_templates_owner_id_designers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_templates_name")),
    )
    op.create_table(
        "template_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("needs", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("lane", sa.String(length=40), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"], ["templates.id"], name=op.f("fk_template_versions_template_id_templates")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["designers.id"], name=op.f("fk_template_versions_created_by_designers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_versions")),
        sa.UniqueConstraint("template_id", "version", name="uq_template_versions_template_version"),
        sa.UniqueConstraint("template_id", "content_sha256", name="uq_template_versions_template_content"),
    )
    op.create_index("ix_template_versions_lane", "template_versions", ["lane"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("kind", existing_type=sa.String(length=10), type_=sa.String(length=40))
        batch_op.add_column(sa.Column("lane", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("template_version_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_jobs_template_version_id_template_versions"),
            "template_versions",
            ["template_version_id"],
            ["id"],
        )
    op.execute("UPDATE jobs SET lane = kind")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("lane", existing_type=sa.String(length=40), nullable=False)
        batch_op.drop_index("ix_jobs_queue")
        batch_op.create_index(
            "ix_jobs_queue", ["status", "lane", "priority", "created_at", "id"], unique=False
        )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=8), nullable=False, server_default="result"))
        batch_op.add_column(sa.Column("node_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("label", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("label")
        batch_op.drop_column("node_id")
        batch_op.drop_column("role")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue")
        batch_op.create_index(
            "ix_jobs_queue", ["status", "kind", "priority", "created_at", "id"], unique=False
        )
        batch_op.drop_constraint(op.f("fk_jobs_template_version_id_template_versions"), type_="foreignkey")
        batch_op.drop_column("template_version_id")
        batch_op.drop_column("lane")
        batch_op.alter_column("kind", existing_type=sa.String(length=40), type_=sa.String(length=10))
    op.drop_index("ix_template_versions_lane", table_name="template_versions")
    op.drop_table("template_versions")
    op.drop_table("templates")
    with op.batch_alter_table("designers", schema=None) as batch_op:
        batch_op.drop_column("role")

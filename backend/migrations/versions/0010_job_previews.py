"""job_previews: the newest live preview of each running job

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:00:00.000000

One row per running job, overwritten (upsert) at each sampler preview the dispatcher relays, deleted when
the job ends; the API reads it when notified and sends it on the job's event stream. Not a job event:
previews are never kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_previews",
        sa.Column("job_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("mime", sa.String(length=20), nullable=False),
        sa.Column("image", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_previews_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_previews")),
    )


def downgrade() -> None:
    op.drop_table("job_previews")

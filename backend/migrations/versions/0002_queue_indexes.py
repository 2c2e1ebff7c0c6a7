"""queue indexes: the claim order and a designer's active jobs

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 04:10:00.000000

`ix_jobs_claim` is the order `claim_next` takes jobs in (priority DESC, then oldest, then id), so the
candidate query reads the head of the index instead of sorting the whole queue. `ix_jobs_queue` gains
`id` so `queue_position`'s tie-break is answered from the index alone. `ix_jobs_designer_status` serves
the per-designer cap on active jobs (`active_jobs`), which scanned every job the designer ever had.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue")
        batch_op.create_index(
            "ix_jobs_queue", ["status", "kind", "priority", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_jobs_claim",
            ["status", sa.literal_column("priority DESC"), "created_at", "id"],
            unique=False,
        )
        batch_op.create_index("ix_jobs_designer_status", ["designer_id", "status"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_designer_status")
        batch_op.drop_index("ix_jobs_claim")
        batch_op.drop_index("ix_jobs_queue")
        batch_op.create_index("ix_jobs_queue", ["status", "kind", "priority", "created_at"], unique=False)

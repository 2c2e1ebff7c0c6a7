"""images.thumb_ready: a render's thumbnail is made after its job succeeded

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 08:00:00.000000

The dispatcher marks a job succeeded once its PNGs are stored and makes the thumbnails after, off the
path the designer waits on; `thumb_ready` says the JPEG is stored. Where it is false (the dispatcher
stopped in between) the API makes the thumbnail on its first request. Rows from before are ready.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("thumb_ready", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("thumb_ready")

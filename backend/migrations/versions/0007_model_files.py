"""model files added by leads (the rows the bucket's added model manifest is written from)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 03:10:00.000000

A lead adds a model by upload or by S3 key; once checked (safetensors header and tensor layout, or a pickle
an admin allowed) and pinned (sha256, size, licence) it is a `model_files` row, and the added manifest in
the models bucket lists every row, so the ML hosts sync it without a redeploy. One file per folder and name.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_files",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("file", sa.String(length=200), nullable=False),
        sa.Column("s3_key", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("licence", sa.String(length=100), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("tensors", sa.Integer(), nullable=True),
        sa.Column("added_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["added_by"], ["designers.id"], name=op.f("fk_model_files_added_by_designers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_files")),
        sa.UniqueConstraint("folder", "file", name="uq_model_files_folder_file"),
    )


def downgrade() -> None:
    op.drop_table("model_files")

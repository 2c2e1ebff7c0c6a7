"""upload roles: what an upload is for (sketch, product, style_photo, composition, photo) and a product's
cut-out (its photo, its matte, the adjustments, the upload an adjusted cut-out derives from)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 06:00:00.000000

Every upload before this one is a sketch (`role` defaults to it). One designer may upload the same bytes in
two roles (a photo and a style photo), so the uniqueness is (designer, role, sha256).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=20), server_default="sketch", nullable=False))
        batch_op.add_column(sa.Column("source_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("matte_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("cutout", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("derived_from", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_uploads_derived_from_uploads"), "uploads", ["derived_from"], ["id"]
        )
        batch_op.drop_constraint("uq_uploads_designer_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_uploads_designer_role_sha256", ["designer_id", "role", "sha256"]
        )


def downgrade() -> None:
    # What the old uniqueness cannot hold: uploads of the new roles and adjusted cut-outs no job used.
    op.execute(
        "DELETE FROM uploads WHERE (role <> 'sketch' OR derived_from IS NOT NULL) "
        "AND id NOT IN (SELECT upload_id FROM jobs WHERE upload_id IS NOT NULL)"
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_constraint("uq_uploads_designer_role_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_uploads_designer_id", ["designer_id", "sha256"])
        batch_op.drop_constraint(batch_op.f("fk_uploads_derived_from_uploads"), type_="foreignkey")
        batch_op.drop_column("derived_from")
        batch_op.drop_column("cutout")
        batch_op.drop_column("matte_key")
        batch_op.drop_column("source_key")
        batch_op.drop_column("role")

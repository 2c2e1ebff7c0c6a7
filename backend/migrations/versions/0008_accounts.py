"""accounts: email and password or identity-provider sign-in, backend sessions, one-time reset links,
sign-in throttles, per-designer quotas and the append-only audit log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 04:00:00.000000

Designers gain an email (lower case, unique), an argon2id password hash, an identity provider's subject
("issuer sub"), the time of their last sign-in and quotas an admin may set. `sign_in_sessions` are the
browsers' backend sessions, `sign_in_throttles` count failed password sign-ins per email hash,
`password_resets` are one-time links. `audit_events` refuses UPDATE and DELETE by trigger on both databases.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_PG_FUNCTION = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END $$
"""
_PG_TRIGGER = """
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
"""
_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events
    BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"""
    for verb in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    with op.batch_alter_table("designers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column("last_sign_in_at", _TS, nullable=True))
        batch_op.add_column(sa.Column("max_active_jobs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_uploads_per_hour", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_designers_email"), ["email"])
        batch_op.create_unique_constraint(batch_op.f("uq_designers_oidc_subject"), ["oidc_subject"])
    op.create_table(
        "sign_in_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("designer_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_seen_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("max_expires_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revoked_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["designer_id"], ["designers.id"], name=op.f("fk_sign_in_sessions_designer_id_designers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_sign_in_sessions_token_hash")),
    )
    op.create_index(op.f("ix_sign_in_sessions_designer_id"), "sign_in_sessions", ["designer_id"])
    op.create_table(
        "sign_in_throttles",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", _TS, nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_sign_in_throttles")),
    )
    op.create_table(
        "password_resets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("designer_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["designer_id"], ["designers.id"], name=op.f("fk_password_resets_designer_id_designers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_resets")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_password_resets_token_hash")),
    )
    op.create_index(op.f("ix_password_resets_designer_id"), "password_resets", ["designer_id"])
    op.create_table(
        "audit_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("actor_name", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=100), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_created_at"), "audit_events", ["created_at"])
    op.create_index(op.f("ix_audit_events_actor_id"), "audit_events", ["actor_id"])
    op.create_index("ix_audit_events_action_created", "audit_events", ["action", "created_at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        for trigger in _SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("audit_events")
    op.drop_table("password_resets")
    op.drop_table("sign_in_throttles")
    op.drop_table("sign_in_sessions")
    with op.batch_alter_table("designers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_designers_oidc_subject"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_designers_email"), type_="unique")
        for column in ("max_uploads_per_hour", "max_active_jobs", "last_sign_in_at", "oidc_subject"):
            batch_op.drop_column(column)
        batch_op.drop_column("password_hash")
        batch_op.drop_column("email")

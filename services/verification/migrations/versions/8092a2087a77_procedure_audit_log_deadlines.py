"""procedure audit log deadlines

Revision ID: 8092a2087a77
Revises: a13f818f24e0
Create Date: 2026-11-22 17:37:12.486813
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "8092a2087a77"
down_revision: str | None = "a13f818f24e0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


S = "verification"

# Add columns; turn case_transitions into the append-only case_audit_log, keeping its rows.


def upgrade() -> None:
    op.rename_table("case_transitions", "case_audit_log", schema=S)
    op.execute(
        f"ALTER TABLE {S}.case_audit_log RENAME CONSTRAINT pk_case_transitions TO pk_case_audit_log"
    )
    op.execute(
        f"ALTER TABLE {S}.case_audit_log RENAME CONSTRAINT fk_case_transitions_case_id_cases "
        "TO fk_case_audit_log_case_id_cases"
    )
    op.execute(f"ALTER INDEX {S}.ix_case_transitions_case_id RENAME TO ix_case_audit_log_case_id")
    op.add_column(
        "case_audit_log",
        sa.Column("action", sa.String(length=20), server_default="transition", nullable=False),
        schema=S,
    )
    op.add_column(
        "case_audit_log", sa.Column("actor_name", sa.String(length=50), nullable=True), schema=S
    )
    # Nobody edits the record of what was done: not a clerk, not the application.
    op.execute(
        f"""
        CREATE FUNCTION {S}.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'case_audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER case_audit_log_append_only BEFORE UPDATE OR DELETE ON {S}.case_audit_log "
        f"FOR EACH ROW EXECUTE FUNCTION {S}.refuse_audit_change()"
    )

    op.add_column(
        "cases",
        sa.Column("paused_seconds", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema=S,
    )
    op.add_column(
        "cases",
        sa.Column("overdue_announced_at", sa.DateTime(timezone=True), nullable=True),
        schema=S,
    )
    op.add_column(
        "cases",
        sa.Column("field_check", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        schema=S,
    )
    op.add_column("cases", sa.Column("notice_text", sa.Text(), nullable=True), schema=S)
    op.add_column(
        "cases", sa.Column("notice_started_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.add_column(
        "cases", sa.Column("notice_ends_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.add_column(
        "cases", sa.Column("transferred_from_case_id", sa.Uuid(), nullable=True), schema=S
    )
    op.add_column(
        "cases",
        sa.Column("transferred_to_department", sa.String(length=40), nullable=True),
        schema=S,
    )


def downgrade() -> None:
    for column in (
        "transferred_to_department",
        "transferred_from_case_id",
        "notice_ends_at",
        "notice_started_at",
        "notice_text",
        "field_check",
        "overdue_announced_at",
        "paused_seconds",
    ):
        op.drop_column("cases", column, schema=S)
    op.execute(f"DROP TRIGGER case_audit_log_append_only ON {S}.case_audit_log")
    op.execute(f"DROP FUNCTION {S}.refuse_audit_change()")
    op.drop_column("case_audit_log", "actor_name", schema=S)
    op.drop_column("case_audit_log", "action", schema=S)
    op.execute(f"ALTER INDEX {S}.ix_case_audit_log_case_id RENAME TO ix_case_transitions_case_id")
    op.execute(
        f"ALTER TABLE {S}.case_audit_log RENAME CONSTRAINT fk_case_audit_log_case_id_cases "
        "TO fk_case_transitions_case_id_cases"
    )
    op.execute(
        f"ALTER TABLE {S}.case_audit_log RENAME CONSTRAINT pk_case_audit_log TO pk_case_transitions"
    )
    op.rename_table("case_audit_log", "case_transitions", schema=S)

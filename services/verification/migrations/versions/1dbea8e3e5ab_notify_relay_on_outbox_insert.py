"""notify relay on outbox insert

Revision ID: 1dbea8e3e5ab
Revises: 04ff531f32be
Create Date: 2026-11-22 17:16:05.666400
"""

from collections.abc import Sequence

from alembic import op

revision: str = "1dbea8e3e5ab"
down_revision: str | None = "04ff531f32be"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The relay LISTENs on this channel and wakes at once instead of polling. A statement-level
# trigger sends one NOTIFY per INSERT statement; PostgreSQL folds repeats within a
# transaction and delivers them on commit.


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION verification.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('relief_outbox_verification', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON verification.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION verification.notify_outbox()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON verification.outbox")
    op.execute("DROP FUNCTION IF EXISTS verification.notify_outbox()")

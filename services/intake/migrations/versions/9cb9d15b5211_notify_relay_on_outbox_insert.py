"""notify relay on outbox insert

Revision ID: 9cb9d15b5211
Revises: d647482769ef
Create Date: 2026-11-22 17:16:05.656571
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9cb9d15b5211"
down_revision: str | None = "d647482769ef"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The relay LISTENs on this channel and wakes at once instead of polling. A statement-level
# trigger sends one NOTIFY per INSERT statement; PostgreSQL folds repeats within a
# transaction and delivers them on commit.


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION intake.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('relief_outbox_intake', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON intake.outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION intake.notify_outbox()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS outbox_notify ON intake.outbox")
    op.execute("DROP FUNCTION IF EXISTS intake.notify_outbox()")

"""Alembic, one history per service, each in its own PostgreSQL schema.

A service's `migrations/env.py` calls `run_env(context, metadata)`; `upgrade()` and friends
build the Alembic config in code, so there is no alembic.ini to keep in step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import async_url

SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
# All services migrate under one advisory lock so that parallel `relief` commands do not race.
_LOCK_KEY = 7_370_001


def alembic_config(service: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(service: str, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, database_url), revision)


def downgrade(service: str, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(service, database_url), revision)


def make_revision(service: str, database_url: str, message: str) -> None:
    command.revision(alembic_config(service, database_url), message=message, autogenerate=True)


def run_env(context: Any, metadata: MetaData) -> None:
    """Body of a service's migrations/env.py (online mode only)."""
    schema = metadata.schema
    if schema is None:
        raise RuntimeError("service metadata must name its schema")
    url = context.config.attributes["database_url"]

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        # Compare only this service's schema; other services' tables are not ours.
        if type_ == "schema":
            return name == schema
        return True

    def do_migrations(connection: Connection) -> None:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=include_name,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as connection:
                await connection.run_sync(do_migrations)
        finally:
            await engine.dispose()

    asyncio.run(run())

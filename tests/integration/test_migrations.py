"""Models and migrations agree, and every migration runs down and up again."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake.models import Base as IntakeBase
from services.notify.models import Base as NotifyBase
from services.verification.models import Base as VerificationBase
from shared import migrations
from tests.conftest import Infra

METADATA = {
    "intake": IntakeBase.metadata,
    "verification": VerificationBase.metadata,
    "notify": NotifyBase.metadata,
}


def _differences(connection: Connection, metadata: MetaData) -> list[Any]:
    schema = metadata.schema

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        return name == schema if type_ == "schema" else True

    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "include_name": include_name,
            "version_table_schema": schema,
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("service", list(METADATA))
async def test_models_match_migrations(engine: AsyncEngine, service: str) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences, METADATA[service])
    assert differences == []


@pytest.mark.parametrize("service", list(METADATA))
def test_migrations_run_down_to_base_and_up_again(infra: Infra, service: str) -> None:
    migrations.downgrade(service, infra.database_url, "base")
    migrations.upgrade(service, infra.database_url)

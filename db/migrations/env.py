"""Alembic environment: runs against the engine handed in by ``db.engine.migrate`` or, from the alembic CLI, the
URL that the settings resolve (``PAGEQA_DATABASE_URL`` or the embedded server)."""

from __future__ import annotations

from alembic import context

from db.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from db.engine import get_engine
        from pageqa.settings import get_settings

        engine = get_engine(get_settings())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()

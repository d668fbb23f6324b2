"""Data access: SQLAlchemy models, engine and sessions, Alembic migrations, queries and the embedded PostgreSQL.
Imports only :mod:`pageqa`; never :mod:`models`."""

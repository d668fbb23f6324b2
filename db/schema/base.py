"""The declarative base every pageqa table is mapped on, and the column helper the table modules share."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every pageqa table."""


def now_column() -> Mapped[dt.datetime]:
    """A ``timestamptz`` column the server fills with ``now()`` (the inserting transaction's start)."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

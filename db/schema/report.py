"""The table of the nightly reports (data access: :mod:`db.report`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Date,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.schema.base import Base


class Report(Base):
    """One nightly report of one day for one scope (a tenant name, or ``"all"`` for every tenant): the
    self-contained HTML page, its figures as JSON and as a flat CSV (section, tenant, metric, value). Building a day
    again replaces its rows. ``day`` is a calendar date in the report's time zone (``json["timezone"]``)."""

    __tablename__ = "reports"
    __table_args__ = (UniqueConstraint("day", "scope", name="uq_reports_day_scope"),
                      Index("ix_reports_scope_day", "scope", text("day DESC")))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    scope: Mapped[str] = mapped_column(String(100), doc="A tenant, or 'all'.")
    html: Mapped[str] = mapped_column(Text)
    json: Mapped[dict] = mapped_column(JSONB, doc="The figures of this scope (see services.report.build).")
    csv: Mapped[str] = mapped_column(Text)
    generated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

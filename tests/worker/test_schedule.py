"""When the nightly report runs and for which day: the beat entry, the report settings, the day's hours in a time zone,
and the Celery task itself (called in this process: it reads PostgreSQL only)."""

from __future__ import annotations

import datetime as dt

import pytest
from celery.schedules import crontab

from db import report as report_db
from db.engine import session_scope
from pageqa.domain import ALL_TENANTS
from pageqa.errors import ConfigError
from pageqa.settings import get_settings
from services.report.build import previous_day
from services.report.figures import DayWindow
from tasks.report import nightly_report
from worker.app import control_queue, get_app, report_schedule
from worker.queue import NIGHTLY_REPORT


def test_beat_sends_the_report_to_the_control_queue_at_report_time(settings, services):
    app = get_app(settings)
    entry = app.conf.beat_schedule["nightly-report"]
    assert entry["task"] == NIGHTLY_REPORT and NIGHTLY_REPORT in app.tasks
    assert entry["options"]["queue"] == control_queue(settings)
    assert isinstance(entry["schedule"], crontab)
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({2}, {0})
    assert app.conf.timezone == settings.report_timezone == "UTC"


def test_report_time_and_zone_are_read_from_the_settings(settings):
    later = settings.model_copy(update={"report_time": "07:45"})
    assert (report_schedule(later).hour, report_schedule(later).minute) == ({7}, {45})


@pytest.mark.parametrize(("zone", "day"), [
    ("UTC", dt.date(2024, 3, 9)),
    ("America/New_York", dt.date(2024, 3, 8)),     # still the evening of the 9th there
    ("Pacific/Auckland", dt.date(2024, 3, 9)),     # already the afternoon of the 10th there
])
def test_previous_day_is_the_day_before_in_the_report_zone(settings, zone, day):
    now = dt.datetime(2024, 3, 10, 3, 30, tzinfo=dt.UTC)
    assert previous_day(settings.model_copy(update={"report_timezone": zone}), now=now) == day


def test_a_daylight_saving_day_has_23_hours():
    window = DayWindow.of(dt.date(2024, 3, 10), "America/New_York")
    assert window.hours == 23
    assert [window.hour_start(h).strftime("%H:%M") for h in (0, 1, 2, 22)] == ["00:00", "01:00", "03:00", "23:00"]
    assert DayWindow.of(dt.date(2024, 11, 3), "America/New_York").hours == 25


@pytest.mark.parametrize(("variable", "value"), [
    ("PAGEQA_REPORT_TIME", "2am"), ("PAGEQA_REPORT_TIME", "24:00"), ("PAGEQA_REPORT_TIMEZONE", "Mars/Olympus"),
    ("PAGEQA_REPORT_TIMEZONE", "../../etc/passwd"),
])
def test_invalid_report_settings_are_one_line_errors(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert variable in str(err.value) and "\n" not in str(err.value)


def test_the_task_builds_the_day_it_is_given(settings, services):
    day = dt.date(2023, 5, 1)
    assert nightly_report.run(day=day.isoformat()) == "2023-05-01"
    with session_scope(settings) as session:
        row = report_db.get_report(session, day=day, scope=ALL_TENANTS)
    assert row.json["timezone"] == "UTC" and row.json["empty"] is True
    assert (settings.home_dir / "reports" / "2023-05-01" / "index.html").exists()

"""When a table is due, for its freshness check: derived from its window and schedule, plus the spec's grace.

Dagster's freshness checks take a deadline cron (time-window partitioned assets: at each tick, the window completed
by then must be materialized) or a maximum age (other assets). Both are derived here, once, from the spec:

- a windowed table is due `grace` after its window ends, or, with a `schedule`, `grace` after the cron's first tick
  at or after the window's end (`schedule_lag`); the deadline is the window's boundary cron shifted by that much
  (`0 0 * * *` + 2h -> `0 2 * * *`), so it must stay shorter than one window;
- a table without a window (or a replicated table) must have been updated within its cron's longest interval
  between two ticks plus `grace`.

Example:
    ```python
    window_deadline_cron("1d", dt.date(2026, 1, 1), grace_seconds=7200, schedule=None)  # '0 2 * * *'
    max_age(cron="0 * * * *", grace_seconds=600)                                       # 1:10:00
    ```
"""

from __future__ import annotations

import datetime as dt
import functools

from croniter import croniter

WINDOW_SECONDS = {"1h": 3_600, "1d": 86_400, "1w": 7 * 86_400, "1mo": 28 * 86_400}
"""Each window size's length; a month counts as its shortest (28 days), so a shifted deadline never passes it."""


class DeadlineError(ValueError):
    """The deadline cannot be expressed: the grace (plus the schedule's lag) is not shorter than one window."""


def window_deadline_cron(size: str, start: dt.date, grace_seconds: int, schedule: str | None) -> str:
    """The cron at whose ticks the window completed by then must be materialized (see the module docstring)."""
    lag = schedule_lag(size, start, schedule) if schedule else 0
    total = lag + grace_seconds
    minutes = -(-total // 60)  # Dagster's crons have minutes: round the deadline up to the next minute
    if minutes * 60 >= WINDOW_SECONDS[size]:
        lagged = f" plus the schedule's {lag // 60} minutes after a window ends" if lag else ""
        raise DeadlineError(
            f"the grace{lagged} ({minutes} minutes) is not shorter than one {size} window, so the check could not "
            "tell which window is late; give a grace shorter than the window"
        )
    days, rest = divmod(minutes, 1440)
    hour, minute = divmod(rest, 60)
    if size == "1h":
        return f"{minute} * * * *"
    if size == "1d":
        return f"{minute} {hour} * * *"
    if size == "1w":  # Dagster's weekly windows start on Sunday (0)
        return f"{minute} {hour} * * {days % 7}"
    return f"{minute} {hour} {1 + days} * *"


def schedule_lag(size: str, start: dt.date, schedule: str) -> int:
    """Seconds from the end of the first window to the schedule's first tick at or after it."""
    end = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC) + dt.timedelta(
        seconds=WINDOW_SECONDS[size] if size != "1mo" else 0
    )
    if size == "1mo":
        end = (end.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    tick = croniter(schedule, end - dt.timedelta(seconds=1)).get_next(dt.datetime)
    return int((tick - end).total_seconds())


def max_age(cron: str, grace_seconds: int) -> dt.timedelta:
    """How old the last update may be: the cron's longest interval between two ticks, plus the grace."""
    return dt.timedelta(seconds=longest_interval(cron) + grace_seconds)


@functools.lru_cache(maxsize=1024)
def longest_interval(cron: str) -> int:
    """The longest gap, in seconds, between two ticks of `cron` over a year (weekday crons: the weekend)."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    itr = croniter(cron, start)
    previous, longest = itr.get_next(dt.datetime), 0
    for _ in range(2_000):
        tick = itr.get_next(dt.datetime)
        longest = max(longest, int((tick - previous).total_seconds()))
        if tick - start > dt.timedelta(days=366):
            break
        previous = tick
    return longest

"""Times PostgreSQL can store and Python cannot hold, read as the nearest one it can.

PostgreSQL keeps timestamps from 4713 BC to the year 294276, and
``infinity``; Python's ``datetime`` holds years 1 to 9999. psycopg refuses
to load anything outside ("timestamp too large (after year 10K)"), so one
such value in a row fails every page and admin view that reads the row,
including the admin page that would delete it. The API refuses such times
on the way in (``profiles.api_input``); these loaders keep the pages up for a
row that is already stored: a time after 9999 reads as :data:`LATEST`, one
before year 1 as :data:`EARLIEST`. Any other parse failure is still raised.

Registered on every new Django connection (``connection_created``, see
``ProfilesConfig.ready``), on top of the loaders Django registers, and with
the same ``timezone`` attribute, so that Django's per-cursor check
(``DatabaseWrapper.create_cursor``) keeps ours.
"""

from datetime import UTC, datetime
from functools import cache

from django.db.backends.postgresql.psycopg_any import BaseTzLoader
from psycopg import DataError
from psycopg.types.datetime import TimestampLoader

# One day inside Python's range, so that showing them in any time zone fits.
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)


def _nearest(data) -> datetime:
    """LATEST or EARLIEST for a value out of Python's range; DataError otherwise."""
    text = bytes(data).strip()
    if text.startswith(b"-") or text.endswith(b"BC"):  # -infinity, or before year 1
        return EARLIEST
    year = text.split(b"-", 1)[0]
    if text == b"infinity" or (year.isdigit() and len(year) > 4):
        return LATEST
    raise DataError(f"can't parse timestamp {text.decode(errors='replace')!r}")


class NearestTimestamptzLoader(BaseTzLoader):
    """Django's timestamptz loader, reading an out-of-range time as the nearest."""

    def load(self, data):
        try:
            return super().load(data)
        except DataError:
            nearest = _nearest(data)
        if self.timezone is None:  # USE_TZ = False: naive, like Django's
            return nearest.replace(tzinfo=None)
        return nearest.astimezone(self.timezone)


class NearestTimestampLoader(TimestampLoader):
    """psycopg's loader of a timestamp without time zone, the same way."""

    def load(self, data):
        try:
            return super().load(data)
        except DataError:
            return _nearest(data).replace(tzinfo=None)


@cache
def _timestamptz_loader(timezone) -> type[NearestTimestamptzLoader]:
    return type("NearestTzLoader", (NearestTimestamptzLoader,), {"timezone": timezone})


def register_nearest_loaders(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: our loaders on a new PostgreSQL connection."""
    if connection.vendor != "postgresql":
        return
    adapters = connection.connection.adapters
    adapters.register_loader("timestamptz", _timestamptz_loader(connection.timezone))
    adapters.register_loader("timestamp", NearestTimestampLoader)

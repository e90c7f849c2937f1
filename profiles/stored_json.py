"""JSON that PostgreSQL holds and Python refuses to read, read anyway.

jsonb keeps a number of any length; Python refuses to turn more than 4,300
digits into an int (a guard against slow parsing), so one such number in a
row failed every page that read the row: a segment whose rule held one took
the segment list down, a profile holding one its own page. The API and the
forms refuse such numbers on the way in; a row written before, or by hand,
reads the number as infinity (with its sign), which the rules check names
as too large and the pages can show.
"""

import json

from django.db import models


def _whole(digits: str):
    try:
        return int(digits)
    except ValueError:
        return float(digits)


class StoredJSONField(models.JSONField):
    def from_db_value(self, value, expression, connection):
        try:
            return super().from_db_value(value, expression, connection)
        except ValueError:  # not a JSONDecodeError (Django handles those): too many digits
            return json.loads(value, cls=self.decoder, parse_int=_whole)

    def deconstruct(self):
        # The same column as Django's own field: migrations see no change.
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs

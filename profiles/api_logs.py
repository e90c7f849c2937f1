"""API keys sent in a URL's query string are kept out of our logs.

The API still accepts a key in the query (``tracking_api_key``,
``auth_token``, ``writeKey``) because older clients send it there, but a
URL is written to the access log, where anyone who reads the logs could take
the key. :class:`RedactApiKeys`, on the loggers that write request lines
(``ProfilesConfig.ready``), replaces the value of those parameters with
``[redacted]`` in a record's message and arguments before any handler sees
it. Parameter names are compared after percent-decoding, as Django reads
them (``tracking%5Fapi%5Fkey`` is ``tracking_api_key``), and in any case.
"""

import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

from profiles.api_input import KEY_FIELDS, SEGMENT_KEY_FIELD

KEY_PARAMETERS = frozenset(name.casefold() for name in (*KEY_FIELDS, SEGMENT_KEY_FIELD))
REDACTED = "[redacted]"
# Loggers that write a request's URL: runserver's access log, Django's
# request errors, and gunicorn's access log when one is configured.
LOGGERS = ("django.server", "django.request", "gunicorn.access", "gunicorn.error")

_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s\"']+)=(?P<value>[^&;#\s\"']*)")


def redact_keys(text: str) -> str:
    """``text`` with the value of every key parameter of a query string replaced."""
    if "=" not in text:
        return text

    def replace(match: re.Match) -> str:
        if _key_name(match["name"]) not in KEY_PARAMETERS:
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    return _PARAMETER.sub(replace, text)


def _key_name(name: str) -> str:
    """A parameter's name as compared: decoded, any case, without stray
    characters. A client that writes ``TRACKING_API_KEY`` or adds a NUL is
    refused (the API reads the exact name), yet its key is as secret."""
    return re.sub(r"[^a-z_]", "", unquote_plus(name).casefold())


def _redact(value):
    return redact_keys(value) if isinstance(value, str) else value


class RedactApiKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_keys(record.msg)
        if isinstance(record.args, Mapping):
            # gunicorn's access log formats from a dict of request atoms.
            for name, value in list(record.args.items()):
                record.args[name] = _redact(value)
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(value) for value in record.args)
        return True


_REDACTOR = RedactApiKeys()


def install() -> None:
    for name in LOGGERS:
        logging.getLogger(name).addFilter(_REDACTOR)  # once, however often called

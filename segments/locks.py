"""Session-level advisory locks that are tried, never waited for.

A job, a refresh or a retention run takes ``pg_try_advisory_lock(namespace,
id)`` for as long as it works: a second delivery of the same work finds it
taken and leaves. The lock dies with the connection that holds it, so a
worker killed mid-way frees the work for the broker's redelivery or the
watchdog.
"""

from django.db import DatabaseError, connection


class TryAdvisoryLock:
    """``with TryAdvisoryLock(namespace, object_id) as lock:`` then
    ``lock.acquired`` says whether this session holds it."""

    def __init__(self, namespace: int, object_id: int):
        self.key = [namespace, object_id % 2**31]
        self.acquired = False

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", self.key)
            self.acquired = cursor.fetchone()[0]
        return self

    def __exit__(self, *exc):
        if not self.acquired:
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", self.key)
        except DatabaseError:
            connection.close()  # the connection is gone, and the lock with it

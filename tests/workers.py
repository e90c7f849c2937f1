"""Real django-q2 clusters for tests about background work.

The cluster is a separate `manage.py qcluster` process on the test database,
exactly as production runs it; tests can kill it (SIGKILL) and start another.
"""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from django.db import connection, connections

BASE_DIR = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    host = s.get("HOST") or s.get("OPTIONS", {}).get("host") or ""
    port = s.get("PORT") or ""
    netloc = f"{s['USER']}:{s.get('PASSWORD') or ''}@"
    if host.startswith("/"):
        return f"postgresql://{netloc}/{s['NAME']}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{netloc}{host}:{port or 5432}/{s['NAME']}"


# The clusters' database sessions carry this name, so a test can find them in
# pg_stat_activity (to terminate one, or to wait until they are gone).
APPLICATION_NAME = "vero-qcluster-test"


def _with_query(url: str, name: str, value: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{name}={value}"


class QCluster:
    def __init__(self, *, workers=2, timeout=10, retry=15, slice_seconds=2, extra_env=None):
        self.env = {
            **os.environ,
            "DATABASE_URL": _with_query(test_database_url(), "application_name", APPLICATION_NAME),
            "Q_WORKERS": str(workers),
            "Q_TIMEOUT": str(timeout),
            "Q_RETRY": str(retry),
            "DELETION_SLICE_SECONDS": str(slice_seconds),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.process = None
        self.log_path = None

    def start(self):
        log = BASE_DIR / ".pytest_cache" / f"qcluster-{os.getpid()}-{time.time_ns()}.log"
        log.parent.mkdir(exist_ok=True)
        self.log_path = log
        self.process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "qcluster"],
            env=self.env,
            cwd=BASE_DIR,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() takes the workers too
        )
        return self

    def kill(self):
        """SIGKILL the whole cluster: no cleanup, no chance to finish a batch."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def freeze(self):
        """SIGSTOP every process of the cluster: a host that vanished, or a
        paused VM. Its sessions stay open, its locks held; nothing answers."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_for(predicate, *, timeout=60.0, interval=0.1, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")


# --- Faults in the database -------------------------------------------------------


@contextmanager
def row_locked(table: str, pk: int):
    """Hold a FOR UPDATE lock on one row from a connection of our own.

    A deletion batch that reaches the row waits for it in the middle of its
    transaction (after its earlier statements, before its commit): the place
    to kill a worker or terminate its connection deterministically.
    """
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute(
                f"SELECT 1 FROM {connection.ops.quote_name(table)} WHERE id = %s FOR UPDATE",
                [pk],
            )
        yield
    finally:
        other.rollback()
        other.close()


@contextmanager
def slow_event_deletes():
    """Every deleted event costs about a millisecond, as on a large, cold
    table: a job of a few thousand profiles takes seconds."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION fault_slow_delete() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(0.0001); RETURN OLD; END $$;
            CREATE TRIGGER fault_slow_delete BEFORE DELETE ON profiles_event
            FOR EACH ROW EXECUTE FUNCTION fault_slow_delete();
            """
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER fault_slow_delete ON profiles_event; "
                "DROP FUNCTION fault_slow_delete();"
            )


def advisory_lock_holders(namespace: int, key: int) -> list[int]:
    """Pids of the sessions holding pg_advisory_lock(namespace, key)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objsubid = 2 AND classid::bigint = %s AND objid::bigint = %s",
            [namespace, key],
        )
        return [row[0] for row in cursor.fetchall()]


def cluster_backends(*, waiting_on_lock=False, query_prefix="") -> list[int]:
    """Pids of the cluster sessions on the test database, optionally only
    those waiting for a lock in a statement that starts with ``query_prefix``."""
    return backends(
        application_name=APPLICATION_NAME,
        waiting_on_lock=waiting_on_lock,
        query_prefix=query_prefix,
    )


def backends(*, application_name=None, waiting_on_lock=False, query_prefix="") -> list[int]:
    """Pids of the other sessions on the test database that match."""
    sql = (
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    params = []
    if application_name is not None:
        sql += " AND application_name = %s"
        params.append(application_name)
    if waiting_on_lock:
        sql += " AND wait_event_type = 'Lock'"
    if query_prefix:
        sql += " AND query LIKE %s"
        params.append(query_prefix.replace("%", r"\%") + "%")
    with connection.cursor() as cursor:
        # Inside a transaction, pg_stat_activity is read from a snapshot taken
        # at its first use; a poll must see the present.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def terminate_backend(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        return cursor.fetchone()[0]

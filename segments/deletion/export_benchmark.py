"""How much memory the web process needs to stream a segment's CSV export.

``python manage.py benchmark_export`` builds its own database (``seed_demo``
profiles, and one segment per size holding the first N profiles, with
their attributes), serves it with gunicorn (one worker, production
settings), and downloads each segment's CSV through the deletion dialog's
export URL, as a browser would, while a sampler reads the worker's resident
memory every 20 ms. The figure is the worker's peak RSS during a download
minus its RSS just before it. Sizes alternate (10k, 100k, 10k, 100k, ...) so
that the machine's drift spreads over all of them; the report gives each
size's median and range. Every download is checked (one row per member).
Figures are figures: nothing here asserts a time.
"""

import http.client
import secrets
import statistics
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlencode

import psutil
from django.db import connection

from segments.deletion.benchmark import BASE_DIR, Databases, _manage
from segments.deletion.benchmark_probe import _free_port, production_env

SEGMENT_PREFIX = "Export benchmark:"


def build_database(dbs: Databases, name: str, *, sizes: list[int], log) -> None:
    dbs.recreate(name)
    url = dbs.url(name)
    started = time.monotonic()
    _manage(["migrate", "--noinput"], database_url=url)
    _manage(
        [
            "seed_demo",
            "--profiles",
            str(max(sizes)),
            "--events-per-profile",
            "0",
            "--no-users",
            "--no-refresh",
        ],
        database_url=url,
    )
    log(f"  seeded {max(sizes):,} profiles in {time.monotonic() - started:.1f}s")
    with dbs.use(name):
        from django.utils import timezone

        from segments.models import Segment

        for size in sizes:
            segment = Segment.objects.create(name=f"{SEGMENT_PREFIX} {size}")
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO segments_segmentmembership (segment_id, profile_id, joined_at) "
                    "SELECT %s, id, now() FROM profiles_profile ORDER BY id LIMIT %s",
                    [segment.pk, size],
                )
            Segment.objects.filter(pk=segment.pk).update(
                member_count=size, last_refreshed_at=timezone.now()
            )
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")


class OneWorker:
    """gunicorn with a single sync worker, whose memory we watch."""

    def __init__(self, database_url):
        self.port = _free_port()
        self.env = production_env(database_url)
        self.process = None

    def __enter__(self):
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "vero_admin.wsgi",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "600",
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=BASE_DIR,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/v2/heartbeat")
                conn.getresponse().read()
                conn.close()
                return self
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc):
        if self.process:
            self.process.terminate()
            self.process.wait(20)

    @property
    def worker(self) -> psutil.Process:
        children = psutil.Process(self.process.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {len(children)}")
        return children[0]


class PeakRss:
    def __init__(self, process: psutil.Process):
        self.process = process
        self.peak = process.memory_info().rss
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            with suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(5)
        with suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)


def _download(port, cookie, csrf, segment_pk, token, count) -> dict:
    """POST the dialog's form to the export URL; read the stream to the end."""
    body = urlencode(
        {"csrfmiddlewaretoken": csrf, "membership_token": token, "expected_count": count}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.monotonic()
    conn.request(
        "POST",
        f"/segments/{segment_pk}/delete-profiles/export/",
        body=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"{cookie}; csrftoken={csrf}",
        },
    )
    response = conn.getresponse()
    first_byte = None
    size = lines = 0
    while chunk := response.read1(1 << 16):
        if first_byte is None:
            first_byte = time.monotonic() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    conn.close()
    return {
        "status": response.status,
        "seconds": time.monotonic() - started,
        "first_byte_s": first_byte,
        "bytes": size,
        "lines": lines,
    }


def benchmark_export(*, sizes: list[int], runs: int, prefix: str, keep: bool, log=print) -> dict:
    from segments.deletion.benchmark_probe import _session_cookie

    dbs = Databases(prefix)
    name = f"{prefix}_export"
    log(f"Building {name} with segments of {', '.join(f'{s:,}' for s in sizes)} members...")
    build_database(dbs, name, sizes=sizes, log=log)
    samples = {size: [] for size in sizes}
    try:
        with dbs.use(name):
            from django.contrib.auth.models import Group, User

            from segments.deletion.selectors import segment_membership_token
            from segments.models import Segment

            user = User.objects.create_user("bench-exporter")
            user.groups.add(Group.objects.get(name="Editors"))
            cookie = _session_cookie(user)
            segments = {
                size: Segment.objects.get(name=f"{SEGMENT_PREFIX} {size}") for size in sizes
            }
            tokens = {size: segment_membership_token(s) for size, s in segments.items()}
        csrf = secrets.token_hex(16)  # 32 characters: an unmasked CSRF secret
        with OneWorker(dbs.url(name)) as server:
            worker = server.worker
            smallest = min(sizes)
            # Warm up: imports, templates, the first connection.
            _download(server.port, cookie, csrf, segments[smallest].pk, tokens[smallest], smallest)
            for run in range(runs):
                for size in sizes:
                    before = worker.memory_info().rss
                    with PeakRss(worker) as rss:
                        result = _download(
                            server.port, cookie, csrf, segments[size].pk, tokens[size], size
                        )
                    if result["status"] != 200 or result["lines"] != size + 1:
                        raise RuntimeError(f"export of {size:,} answered {result}")
                    result.update(
                        rss_before_mb=before / 2**20,
                        rss_peak_mb=rss.peak / 2**20,
                        growth_mb=(rss.peak - before) / 2**20,
                    )
                    samples[size].append(result)
                    log(
                        f"  run {run + 1}, {size:>9,} members: {result['seconds']:.2f}s, "
                        f"{result['bytes'] / 2**20:.1f} MB of CSV, worker RSS "
                        f"{result['rss_before_mb']:.1f} -> peak {result['rss_peak_mb']:.1f} MB "
                        f"(+{result['growth_mb']:.2f})"
                    )
    finally:
        if not keep:
            dbs.drop(name)
    return {"runs": runs, "sizes": {size: _summary(samples[size]) for size in sizes}}


def _summary(results: list[dict]) -> dict:
    def trio(key, digits=2):
        values = [r[key] for r in results]
        return {
            "median": round(statistics.median(values), digits),
            "min": round(min(values), digits),
            "max": round(max(values), digits),
        }

    return {
        "growth_mb": trio("growth_mb"),
        "rss_before_mb": trio("rss_before_mb", 1),
        "seconds": trio("seconds"),
        "first_byte_s": trio("first_byte_s", 3),
        "csv_mb": round(results[0]["bytes"] / 2**20, 1),
    }


def format_table(result: dict) -> str:
    lines = [
        f"{'members':>10} {'RSS growth MB: median (range)':>32} {'RSS before':>11} "
        f"{'seconds: median (range)':>26} {'first byte s':>13} {'CSV MB':>7}"
    ]
    for size, s in result["sizes"].items():
        g, t = s["growth_mb"], s["seconds"]
        lines.append(
            f"{size:>10,} {g['median']:>14.2f} ({g['min']:.2f}-{g['max']:.2f}){'':>7} "
            f"{s['rss_before_mb']['median']:>11.1f} "
            f"{t['median']:>12.2f} ({t['min']:.2f}-{t['max']:.2f}){'':>2} "
            f"{s['first_byte_s']['median']:>13.3f} {s['csv_mb']:>7.1f}"
        )
    return "\n".join(lines)

"""Measure ingestion throughput and latency against a running server on this machine.

Sends a bounded number of requests from a few threads over plain
http.client, to 127.0.0.1 only, and prints requests/s, events/s and
latency percentiles. Start the server first, for example:

    .venv/bin/python manage.py create_api_key bench --scope track  # prints the key last
    .venv/bin/gunicorn vero_admin.wsgi -w 4 -b 127.0.0.1:8000
    .venv/bin/python scripts/bench_ingestion.py --key KEY --requests 5000

Modes: ``vero`` (POST /api/v2/events/track, every third request an identify
via /api/v2/users/track) and ``segment`` (POST /v1/batch with --batch-size
track messages each).
"""

import argparse
import base64
import http.client
import json
import statistics
import threading
import time
import uuid
from collections import Counter
from urllib.parse import urlsplit

ALLOWED_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_REQUESTS = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True, help="an API key (manage.py create_api_key)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--profiles", type=int, default=2000, help="distinct user ids to use")
    parser.add_argument("--mode", choices=["vero", "segment"], default="vero")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()

    target = urlsplit(args.url)
    if target.scheme != "http" or target.hostname not in ALLOWED_HOSTS:
        parser.error("only http://127.0.0.1 (this machine) is allowed")
    if not 0 < args.requests <= MAX_REQUESTS:
        parser.error(f"--requests must be between 1 and {MAX_REQUESTS}")

    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(args.requests))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    events = 0

    def next_index():
        with lock:
            return next(counter, None)

    def request_for(index: int) -> tuple[str, dict, dict, int]:
        user_id = f"bench-{run_id}-{index % args.profiles}"
        if args.mode == "segment":
            batch = [
                {
                    "type": "track",
                    "userId": f"bench-{run_id}-{(index * args.batch_size + n) % args.profiles}",
                    "event": "bench_event",
                    "properties": {"n": n},
                    "messageId": f"{run_id}-{index}-{n}",
                }
                for n in range(args.batch_size)
            ]
            auth = base64.b64encode(f"{args.key}:".encode()).decode()
            return "/v1/batch", {"batch": batch}, {"Authorization": f"Basic {auth}"}, len(batch)
        if index % 3 == 2:
            body = {"id": user_id, "data": {"seen": index}, "tracking_api_key": args.key}
            return "/api/v2/users/track", body, {}, 0
        body = {
            "identity": {"id": user_id},
            "event_name": "bench_event",
            "data": {"index": index},
            "tracking_api_key": args.key,
        }
        return "/api/v2/events/track", body, {}, 1

    def worker():
        nonlocal events
        connection = None
        mine, my_statuses, my_events = [], Counter(), 0
        while (index := next_index()) is not None:
            path, body, headers, n_events = request_for(index)
            payload = json.dumps(body).encode()
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(
                        target.hostname, target.port or 80, timeout=30
                    )
                connection.request(
                    "POST", path, payload, {"Content-Type": "application/json", **headers}
                )
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException):
                status = "connection error"
                if connection is not None:
                    connection.close()
                connection = None
            mine.append(time.perf_counter() - started)
            my_statuses[status] += 1
            if status == 200:
                my_events += n_events
        if connection is not None:
            connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(my_statuses)
            events += my_events

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    print(f"mode {args.mode}, {args.requests} requests, {args.threads} threads, {elapsed:.1f} s")
    print(f"statuses: {dict(statuses)}")
    print(f"throughput: {args.requests / elapsed:.0f} requests/s, {events / elapsed:.0f} events/s")
    print(
        f"latency ms: p50 {percentile(0.50):.1f}, p95 {percentile(0.95):.1f}, "
        f"p99 {percentile(0.99):.1f}, max {latencies[-1] * 1000:.1f}, "
        f"mean {statistics.fmean(latencies) * 1000:.1f}"
    )


if __name__ == "__main__":
    main()

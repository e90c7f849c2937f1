"""`manage.py serve` (`make run`): started, interrupted and killed as a user
would, in a session of its own on the test database."""

import os
import signal
import socket
import subprocess
import sys
import time
from io import StringIO

import psutil
import pytest
from django.core.management import call_command
from django_q.tasks import async_task

from segments.deletion import services as deletion
from segments.models import DeletionJob
from tests import workers
from tests.segments.population import insert_population
from tests.workers import (
    APPLICATION_NAME,
    BASE_DIR,
    _with_query,
    cluster_backends,
    slow_event_deletes,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`manage.py serve` as a terminal runs it: its own session and process
    group, so a signal to the group is what Ctrl-C sends."""

    def __init__(self, tmp_path, **env):
        self.log_path = tmp_path / f"serve-{time.time_ns()}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": _with_query(
                workers.test_database_url(), "application_name", APPLICATION_NAME
            ),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "serve", "--port", str(free_port())],
            env=self.env,
            cwd=BASE_DIR,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: "] running." in self.log(), timeout=60, message="the cluster to run")
        return self

    def log(self) -> str:
        return self.log_path.read_text()

    def everything(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def ctrl_c(self):
        os.killpg(self.process.pid, signal.SIGINT)

    def crash(self):
        """SIGKILL every process at once: a power cut, the OOM killer."""
        for process in self.everything():
            process.kill()
        self.process.wait(10)


def gone(processes) -> bool:
    return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_one_ctrl_c_stops_the_web_server_and_every_worker_and_the_next_start_works(tmp_path):
    for _ in range(3):
        serve = Serve(tmp_path).start()
        # A worker busy with a task, as with a deletion slice under way.
        async_task("time.sleep", 60)
        wait_for(lambda s=serve: "'time.sleep'" in s.log(), message="a worker to be busy")
        processes = serve.everything()
        assert len(processes) >= 6  # serve, runserver, the cluster and its workers
        serve.ctrl_c()
        wait_for(lambda p=processes: gone(p), timeout=10, message="every process to stop")
        assert serve.process.wait(1) == 0
        assert "Traceback" not in serve.log()
    wait_for(lambda: not cluster_backends(), timeout=10, message="their sessions to end")


def test_a_deletion_cut_off_by_a_crash_resumes_within_seconds_of_the_next_start(tmp_path, alice):
    """Before, a restart waited for the job to be stale (90 s) or for the
    broker to hand the lost task out again (Q_RETRY, 180 s)."""
    population = insert_population(doomed=1500, survivors=300)
    job = deletion.deletion_start(
        segment=population.segment,
        user=alice,
        typed_name=population.segment.name,
        expected_count=1500,
    ).job
    env = {"DELETION_SLICE_SECONDS": "30", "Q_RETRY": "180", "DELETION_STALE_AFTER_SECONDS": "90"}
    with slow_event_deletes():
        first = Serve(tmp_path, **env).start()
        try:
            wait_for(
                lambda: DeletionJob.objects.get(pk=job.pk).deleted > 0,
                timeout=60,
                message="a first batch",
            )
        finally:
            first.crash()
        wait_for(lambda: not cluster_backends(), timeout=30, message="the dead run's sessions")
        at_crash = DeletionJob.objects.get(pk=job.pk)
        assert at_crash.is_active

        second = Serve(tmp_path, **env).start()
        try:
            up = time.monotonic()
            wait_for(
                lambda: DeletionJob.objects.get(pk=job.pk).deleted > at_crash.deleted,
                timeout=15,
                message="the job to resume",
            )
            assert time.monotonic() - up < 15
            done = wait_for(
                lambda: DeletionJob.objects.filter(pk=job.pk, status="completed").first(),
                timeout=90,
                message="the job to complete",
            )
        finally:
            processes = second.everything()
            second.ctrl_c()
            wait_for(lambda: gone(processes), timeout=10, message="every process to stop")
        wait_for(lambda: not cluster_backends(), timeout=30, message="the sessions to end")
    assert (done.deleted, done.skipped) == (1500, 0)
    assert done.interruptions == 1
    out = StringIO()
    call_command("verify_deletion", str(job.pk), stdout=out)
    assert out.getvalue().rstrip().endswith("Every check passed.")

"""`make run`'s last step: the web server and a django-q2 cluster together.

One Ctrl-C stops everything, and leaves nothing behind for the next start:

- Each child runs in a process group of its own, so the terminal's SIGINT
  reaches only this command, which then stops each child once, with SIGTERM.
  (django-q2's processes ignore SIGINT, and its main process, signalled by
  the terminal and by us at once, stopped twice over and printed an
  AttributeError.)
- The cluster gets STOP_GRACE_SECONDS to stop cleanly; then its whole process
  group (sentinel, workers, pusher, monitor) is killed. A worker killed
  mid-batch loses nothing: the batch rolls back, and the next start resumes
  the job. Before, a cluster busy with a task outlived `make run` for good.
- A child learns of our death from the kernel (PR_SET_PDEATHSIG), so even a
  SIGKILL of this command does not leave a web server holding the port.

While it runs, it also calls the deletion watchdog at start and every
DELETION_SWEEP_SECONDS, so a job whose worker died (a crash, a killed
`make run`) resumes within seconds of the workers being up, not at the
scheduler's next minute.
"""

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

logger = logging.getLogger("vero_admin.serve")

STOP_GRACE_SECONDS = 5
PR_SET_PDEATHSIG = 1


def _stop_with_parent():  # runs in the child, between fork and exec
    # Not on Linux: a SIGKILL of serve leaves the children running.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


class Command(BaseCommand):
    help = "Run the web server and the django-q2 worker cluster together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))

    def handle(self, *args, port, host, **options):
        requests = []

        def asked_to_stop(signum, frame):
            requests.append(signum)

        # Before anything starts, so a Ctrl-C at any later moment is ours.
        signal.signal(signal.SIGINT, asked_to_stop)
        signal.signal(signal.SIGTERM, asked_to_stop)

        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = []
        try:
            for command in (["runserver", f"{host}:{port}", "--noreload"], ["qcluster"]):
                if requests:
                    break
                children.append(
                    subprocess.Popen(
                        [*manage, *command],
                        process_group=0,
                        preexec_fn=_stop_with_parent,
                    )
                )
            if not requests:
                self.stdout.write(
                    self.style.SUCCESS(f"\nvero_admin is running at http://{host}:{port}/")
                )
                self.stdout.write(
                    "Log in as admin, editor or viewer (password: see DEMO_PASSWORD, default demo)."
                )
                self.stdout.write("Press Ctrl-C to stop the web server and the worker.\n")
            next_sweep = time.monotonic()
            while not requests and all(child.poll() is None for child in children):
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + settings.DELETION_SWEEP_SECONDS
                time.sleep(0.2)
        finally:
            self._stop(children, requests)

    def _sweep(self):
        """Resume deletions whose runner is gone; never let a failure stop serve."""
        from segments.deletion.watchdog import deletion_watchdog

        try:
            close_old_connections()
            deletion_watchdog()
        except DatabaseError as exc:
            logger.warning("Deletion watchdog: %s", exc)

    def _stop(self, children, requests):
        # SIGTERM, not the SIGINT we got: a shell may have started us with
        # SIGINT ignored, and the children would inherit that.
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            while child.poll() is None and time.monotonic() < deadline and len(requests) < 2:
                time.sleep(0.05)
        # Whatever is left in the children's groups (a cluster still finishing
        # a task, or one whose main process is gone): killed, not orphaned.
        for child in children:
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()

"""Task functions for tests that watch django-q2 itself, run by a real cluster."""

import os
import signal
import time


def record_then_die(path: str) -> None:
    """Note the delivery, then die the way the OOM killer kills: SIGKILL,
    no exception, no result for django-q2 to save."""
    with open(path, "a") as out:
        out.write(f"{time.time()} {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGKILL)

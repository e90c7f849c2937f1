"""scripts/screenshots.py still finds its way through the pages: it is run
as the README says, against a live server with a real worker, so a change
to the pages that loses a role or a label it relies on fails here."""

import struct
import subprocess
import sys

import pytest

from profiles.models import Profile
from tests.conftest import PASSWORD
from tests.segments.population import build_population
from tests.workers import BASE_DIR, QCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCRIPT = BASE_DIR / "scripts" / "screenshots.py"
PICTURES = [
    f"flow-{i}-{name}.png"
    for i, name in enumerate(["segment", "menu", "dialog", "progress", "done", "builder"], start=1)
]


def run_script(live_server, out, segment_name):
    return subprocess.run(
        [
            sys.executable,
            SCRIPT,
            *("--url", live_server.url, "--username", "alice", "--password", PASSWORD),
            *("--segment", segment_name, "--out", out, "--timeout", "60"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_the_screenshot_script_walks_the_flow_and_writes_every_picture(
    live_server, alice, tmp_path
):
    population = build_population(doomed=4, survivors=3, events_each=1, name="Lapsed trials")
    segment = population.segment
    segment.rules = {
        "match": "all",
        "conditions": [
            {"type": "property", "field": "plan", "operator": "equals", "value": "trial"}
        ],
    }
    segment.save()
    out = tmp_path / "pictures"  # the worker writes its receipts under tmp_path too
    out.mkdir()
    with QCluster():
        result = run_script(live_server, out, "Lapsed trials")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(PICTURES)
    for name in PICTURES:
        assert png_size(out / name) == (1280, 800)
    assert not Profile.objects.filter(pk__in=population.doomed).exists()


def test_the_screenshot_script_refuses_a_segment_with_nobody_to_delete(
    live_server, alice, tmp_path
):
    population = build_population(doomed=0, survivors=2, events_each=0, name="Nobody here")
    result = run_script(live_server, tmp_path, population.segment.name)
    assert result.returncode == 1
    assert "has no profiles to delete" in result.stderr
    assert not list(tmp_path.iterdir())
    assert Profile.objects.count() == 2

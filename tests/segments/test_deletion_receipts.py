"""Deletion receipts: the digests and counts of exactly what a job erased,
in the database and in the file the job's ending writes."""

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from messaging.models import Message, MessageActivity
from profiles.erasure import profile_erase
from profiles.models import Event, Profile, SubscriptionPreference, Suppression
from segments.deletion import services as deletion
from segments.deletion import watchdog
from segments.deletion.checks import deletion_verify
from segments.deletion.receipts import (
    receipt_chunks,
    receipt_entries,
    receipt_path,
    receipt_read_file,
)
from segments.models import DeletionJob, DeletionReceiptBatch, SegmentMembership
from tests.profiles.factories import ProfileFactory
from tests.segments.factories import SegmentMembershipFactory
from tests.segments.population import build_population
from tests.segments.test_deletion import run_to_end, start

pytestmark = pytest.mark.django_db


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def expected_pairs(profile_ids) -> set[tuple]:
    """The digests, computed in Python from the rows before they are erased."""
    return {
        (
            sha(p.user_id) if p.user_id is not None else None,
            sha(p.email.strip().lower()) if p.email.strip() else None,
        )
        for p in Profile.objects.filter(pk__in=profile_ids)
    }


def receipt_pairs(job) -> set[tuple]:
    return set(receipt_entries(job.pk))


@pytest.fixture
def population():
    population = build_population(doomed=10, survivors=10)
    # The awkward cases: an email with capitals and spaces, no user id, no email.
    odd = [
        ProfileFactory(user_id="Ada-1", email="  Ada.Lovelace@Example.COM "),
        ProfileFactory(user_id=None, email="only-email@example.com"),
        ProfileFactory(user_id="only-id", email=""),
    ]
    for profile in odd:
        SegmentMembershipFactory(segment=population.segment, profile=profile)
        population.doomed.append(profile.pk)
    population.segment.member_count = len(population.doomed)
    population.segment.save()
    return population


def counts_of(profile_ids) -> dict:
    messages = Message.objects.filter(profile_id__in=profile_ids)
    return {
        "events_deleted": Event.objects.filter(profile_id__in=profile_ids).count(),
        "preferences_deleted": SubscriptionPreference.objects.filter(
            profile_id__in=profile_ids
        ).count(),
        "memberships_deleted": SegmentMembership.objects.filter(profile_id__in=profile_ids).count(),
        "messages_anonymized": messages.count(),
        "activity_anonymized": MessageActivity.objects.filter(message__in=messages).count(),
    }


def test_the_receipt_holds_the_digests_and_counts_of_exactly_the_profiles_erased(population, alice):
    expected = expected_pairs(population.doomed)
    counts = counts_of(population.doomed)
    survivors = expected_pairs(population.survivors)

    job = start(population, alice)
    run_to_end(job)

    assert receipt_pairs(job) == expected
    assert len(expected) == 13 and not expected & survivors
    assert (sha("ada-1"), sha("ada.lovelace@example.com")) not in expected  # ids keep their case
    assert (sha("Ada-1"), sha("ada.lovelace@example.com")) in expected
    assert (None, sha("only-email@example.com")) in expected
    assert (sha("only-id"), None) in expected
    document = json.loads("".join(receipt_chunks(job)))
    assert document["counts"] == {
        "profiles_requested": 13,
        "profiles_deleted": 13,
        "profiles_skipped": 0,
        **counts,
    }
    assert {tuple(pair) for pair in document["profiles"]} == expected
    assert document["job"] == job.pk and document["status"] == "completed"
    assert document["confirmed_by"] == "alice"
    assert document["segment"]["name"] == "Trial users"
    assert document["started_at"] and document["finished_at"]


def test_a_profile_gone_before_its_batch_is_skipped_and_not_on_the_receipt(population, alice):
    job = start(population, alice)
    gone = population.doomed[0]
    profile_erase(profile=Profile.objects.get(pk=gone))
    expected = expected_pairs(population.doomed)  # the erased one is no longer there
    run_to_end(job)
    assert (job.deleted, job.skipped) == (12, 1)
    assert receipt_pairs(job) == expected
    assert deletion_verify(job=job).ok


def test_the_job_ending_writes_the_receipt_file_the_database_agrees_with(
    population, alice, receipts_dir
):
    expected = expected_pairs(population.doomed)
    job = start(population, alice)
    run_to_end(job)
    path = receipt_path(job.pk)
    assert path.parent == receipts_dir and path.name == f"deletion-{job.pk}.json"
    assert json.loads(path.read_text()) == json.loads("".join(receipt_chunks(job)))
    summary, entries = receipt_read_file(path)
    assert set(entries) == expected
    assert summary["counts"]["profiles_deleted"] == 13
    assert not list(receipts_dir.glob(".*.tmp")), "the temporary file is renamed into place"


def test_a_cancelled_job_gets_a_receipt_of_what_it_erased(population, alice):
    job = start(population, alice)
    deletion.deletion_run_batch(job_id=job.pk, batch_size=5)
    deletion.deletion_cancel(job=job, user=alice)
    assert run_to_end(job) == "cancelled"
    summary, entries = receipt_read_file(receipt_path(job.pk))
    entries = set(entries)
    assert summary["status"] == "cancelled" and len(entries) == job.deleted == 5
    assert entries == receipt_pairs(job)
    assert deletion_verify(job=job).ok


def test_a_failed_job_gets_a_receipt(population, alice):
    job = start(population, alice)
    deletion._finish(job.pk, DeletionJob.Status.FAILED, error="Stopped for a test")
    summary, entries = receipt_read_file(receipt_path(job.pk))
    assert summary["status"] == "failed" and list(entries) == []


def test_the_rules_as_confirmed_are_kept_and_an_identifier_in_them_is_hashed(population, alice):
    rules = {
        "match": "any",
        "conditions": [
            {"type": "property", "field": "email", "operator": "equals", "value": "ada@x.test"},
            {"type": "property", "field": "plan", "operator": "equals", "value": "trial"},
        ],
    }
    population.segment.rules = rules
    population.segment.save()
    job = start(population, alice)
    population.segment.rules = {"match": "all", "conditions": []}  # edited afterwards
    population.segment.save()
    run_to_end(job)
    job.refresh_from_db()
    assert job.rules_at_confirmation == rules
    text = "".join(receipt_chunks(job))
    assert "ada@x.test" not in text
    shown = json.loads(text)["segment"]["rules"]["conditions"]
    assert shown[0]["value"]["sha256"] == sha("ada@x.test")
    assert shown[1]["value"] == "trial"


NESTED_RULES = {
    "match": "all",
    "conditions": [
        {"type": "property", "field": "email", "operator": "contains", "value": "Grace.Hopper"},
        {"type": "property", "field": "country", "operator": "equals", "value": "FR"},
        {
            "match": "any",
            "conditions": [
                {"type": "property", "field": "user_id", "operator": "not_equals", "value": "u-77"},
                {
                    "type": "property",
                    "field": "email",
                    "operator": "equals",
                    "value": " Alan@Turing.Example ",
                },
                {"type": "property", "field": "user_id", "operator": "contains", "value": "zed-"},
                {"type": "property", "field": "email", "operator": "exists"},
            ],
        },
    ],
}
CLEAR_IDENTIFIERS = ("Grace.Hopper", "grace.hopper", "u-77", "Alan@Turing", "alan@turing", "zed-")


def test_every_identifier_value_in_the_rules_is_hashed_whatever_its_operator_and_depth(
    population, alice
):
    population.segment.rules = NESTED_RULES
    population.segment.save()
    job = start(population, alice)
    run_to_end(job)
    job.refresh_from_db()
    for text in ("".join(receipt_chunks(job)), receipt_path(job.pk).read_text()):
        for clear in CLEAR_IDENTIFIERS:
            assert clear not in text
        rules = json.loads(text)["segment"]["rules"]
        contains, country, group = rules["conditions"]
        assert contains["operator"] == "contains" and contains["field"] == "email"
        assert contains["value"]["sha256"] == sha("Grace.Hopper")  # the fragment as written
        assert "text in the rule" in contains["value"]["hashed"]
        assert country["value"] == "FR"  # an attribute's value is kept as written
        not_equals, equals, user_contains, exists = group["conditions"]
        assert not_equals["value"]["sha256"] == sha("u-77")
        assert equals["value"]["sha256"] == sha("alan@turing.example")  # trimmed, lower-cased
        assert user_contains["value"]["sha256"] == sha("zed-")
        assert "value" not in exists
    assert deletion_verify(job=job).ok


def test_verify_deletion_fails_a_receipt_file_whose_rules_hold_an_identifier(population, alice):
    population.segment.rules = NESTED_RULES
    population.segment.save()
    job = start(population, alice)
    run_to_end(job)
    path = receipt_path(job.pk)
    document = json.loads(path.read_text())
    document["segment"]["rules"]["conditions"][0]["value"] = "Grace.Hopper"
    path.write_text(json.dumps(document))
    failures = deletion_verify(job=job).failures
    assert {f.check for f in failures} == {"receipt file"}
    assert "rules hold an email or user id" in failures[0].detail


def test_without_suppression_nobody_is_suppressed(population, alice):
    job = start(population, alice)
    run_to_end(job)
    assert not Suppression.objects.exists()


def test_with_suppression_every_erased_identifier_is_listed_with_its_job(population, alice):
    expected = expected_pairs(population.doomed)
    job = start(population, alice, suppress=True)
    run_to_end(job)
    listed = set(Suppression.objects.values_list("kind", "digest", "job_id"))
    assert listed == {("user_id", u, job.pk) for u, _ in expected if u} | {
        ("email", e, job.pk) for _, e in expected if e
    }
    assert json.loads("".join(receipt_chunks(job)))["suppressed"] is True


def test_the_receipt_rows_hold_nothing_but_digests(population, alice):
    identifiers = list(
        Profile.objects.filter(pk__in=population.doomed).values_list("user_id", "email")
    )
    job = start(population, alice, suppress=True)
    run_to_end(job)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(r)::text FROM segments_deletionreceiptbatch r WHERE job_id = %s "
            "UNION ALL SELECT row_to_json(s)::text FROM profiles_suppression s",
            [job.pk],
        )
        stored = "\n".join(row[0] for row in cursor.fetchall())
    text = receipt_path(job.pk).read_text()
    for user_id, email in identifiers:
        for value in filter(None, (user_id, email and email.strip(), email and email.lower())):
            assert value not in stored and value not in text


def test_verify_deletion_fails_a_receipt_that_holds_an_identifier(population, alice):
    job = start(population, alice)
    run_to_end(job)
    batch = DeletionReceiptBatch.objects.filter(job=job).first()
    batch.email_sha256[0] = "ada@example.com"
    batch.save()
    failed = {f.check for f in deletion_verify(job=job).failures}
    assert failed == {"receipt"}


def test_verify_deletion_fails_a_receipt_whose_digests_no_longer_pair_up(population, alice):
    job = start(population, alice)
    run_to_end(job)
    batch = DeletionReceiptBatch.objects.filter(job=job).first()
    batch.email_sha256.pop()
    batch.save()
    failures = deletion_verify(job=job).failures
    assert {f.check for f in failures} == {"receipt"}
    assert "do not pair up" in failures[0].detail


def test_a_batch_writes_one_receipt_row_with_each_profiles_digests_side_by_side(population, alice):
    expected = expected_pairs(population.doomed)
    job = start(population, alice)
    sizes = []
    while handled := deletion.deletion_run_batch(job_id=job.pk, batch_size=4).handled:
        sizes.append(handled)
    rows = DeletionReceiptBatch.objects.filter(job=job).order_by("pk")
    assert sizes == [4, 4, 4, 1]
    assert [len(r.user_id_sha256) for r in rows] == sizes
    assert [len(r.email_sha256) for r in rows] == sizes
    # Each (user id, email) pair is one profile's: the arrays run in step.
    assert receipt_pairs(job) == expected


def test_verify_deletion_fails_a_receipt_file_that_holds_an_identifier(population, alice):
    job = start(population, alice)
    run_to_end(job)
    path = receipt_path(job.pk)
    digest = next(e for _, e in receipt_entries(job.pk) if e)
    path.write_text(path.read_text().replace(digest, "ada@example.com", 1))
    failures = deletion_verify(job=job).failures
    assert {f.check for f in failures} == {"receipt file"}
    assert "something other than a digest" in failures[0].detail


def test_verify_deletion_fails_a_receipt_missing_an_erased_profile(population, alice):
    job = start(population, alice)
    run_to_end(job)
    batch = DeletionReceiptBatch.objects.filter(job=job).first()
    batch.user_id_sha256.pop(0)
    batch.email_sha256.pop(0)
    batch.save()
    assert {f.check for f in deletion_verify(job=job).failures} == {"receipt", "receipt file"}


def test_a_receipt_file_that_cannot_be_written_does_not_fail_the_job(
    population, alice, settings, tmp_path, caplog
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.DELETION_RECEIPTS_DIR = blocker / "receipts"
    job = start(population, alice)
    assert run_to_end(job) == "completed"
    assert job.status == "completed" and job.deleted == 13
    assert "could not write its receipt" in caplog.text
    # Moments after the ending the file may still be on its way (the worker
    # writes it after the commit, the watchdog if the worker stopped)...
    report = deletion_verify(job=job)
    assert report.ok
    assert (
        "is being written" in next(f for f in report.findings if f.check == "receipt file").detail
    )
    # ...but once the watchdog would have written it, its absence fails.
    DeletionJob.objects.filter(pk=job.pk).update(
        finished_at=job.finished_at - timedelta(seconds=settings.DELETION_STALE_AFTER_SECONDS + 1)
    )
    job.refresh_from_db()
    failures = deletion_verify(job=job).failures
    assert [f.check for f in failures] == ["receipt file"]
    assert "has no receipt file" in failures[0].detail


def test_a_receipt_file_reformatted_by_another_tool_reads_the_same(population, alice, tmp_path):
    job = start(population, alice)
    run_to_end(job)
    original = receipt_path(job.pk)
    summary, entries = receipt_read_file(original)
    entries = list(entries)
    for name, text in {
        "pretty.json": json.dumps(json.loads(original.read_text()), indent=4),
        "compact.json": json.dumps(json.loads(original.read_text())),
    }.items():
        copy = tmp_path / name
        copy.write_text(text)
        again, again_entries = receipt_read_file(copy)
        assert again == summary and list(again_entries) == entries


def test_verify_deletion_fails_a_suppression_that_holds_an_identifier(population, alice):
    job = start(population, alice, suppress=True)
    run_to_end(job)
    row = Suppression.objects.filter(job_id=job.pk, kind="email").first()
    row.digest = "ada@example.com"
    row.save()
    failures = deletion_verify(job=job).failures
    assert [f.check for f in failures] == ["receipt"]
    assert "(or of its suppressions) are not SHA-256 digests" in failures[0].detail


def age(job, seconds):
    DeletionJob.objects.filter(pk=job.pk).update(
        finished_at=job.finished_at - timedelta(seconds=seconds)
    )


def test_the_watchdog_writes_a_receipt_file_the_worker_did_not_get_to(population, alice):
    """The worker stopped (a deploy, a crash) after the job's ending committed
    and before its file was written: the watchdog writes it, once the job has
    been over for longer than a worker could still be writing it."""
    job = start(population, alice)
    run_to_end(job)
    path = receipt_path(job.pk)
    path.unlink()
    DeletionJob.objects.filter(pk=job.pk).update(receipt_written_at=None)
    watchdog.deletion_watchdog()
    assert not path.exists(), "a job that just ended is left to its worker"
    age(job, 120)
    watchdog.deletion_watchdog()
    assert set(receipt_read_file(path)[1]) == receipt_pairs(job)
    assert deletion_verify(job=job).ok
    written = path.stat().st_mtime_ns
    watchdog.deletion_watchdog()
    assert path.stat().st_mtime_ns == written, "written once"


def test_the_watchdog_rewrites_the_file_of_a_job_that_ended_again(population, alice):
    job = start(population, alice)
    DeletionJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    run_to_end(job)
    assert receipt_read_file(receipt_path(job.pk))[0]["status"] == "cancelled"
    # Resumed and completed, but the worker stopped before the new file.
    deletion.deletion_resume(job=job, user=alice)
    DeletionJob.objects.filter(pk=job.pk).update(status="running")
    while deletion.deletion_run_batch(job_id=job.pk, batch_size=100).handled:
        pass
    with transaction.atomic():
        DeletionJob.objects.filter(pk=job.pk).update(status="completed", finished_at=timezone.now())
    job.refresh_from_db()
    age(job, 120)  # and its first file older still, as it was written before the resume
    DeletionJob.objects.filter(pk=job.pk).update(
        receipt_written_at=job.finished_at - timedelta(seconds=300)
    )
    watchdog.deletion_watchdog()
    summary, entries = receipt_read_file(receipt_path(job.pk))
    assert summary["status"] == "completed" and len(set(entries)) == 13


@pytest.mark.django_db(transaction=True)
def test_the_migration_to_receipt_batches_keeps_every_entry_in_order():
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("segments", "0015_deletion_runner")])
    old = executor.loader.project_state([("segments", "0015_deletion_runner")]).apps
    job = old.get_model("segments", "DeletionJob").objects.create(
        segment_name="Old job", status="completed"
    )
    entry = old.get_model("segments", "DeletionReceiptEntry")
    pairs = [(sha(f"user-{i}"), sha(f"p{i}@example.com") if i % 3 else None) for i in range(5003)]
    entry.objects.bulk_create(
        entry(job_id=job.pk, user_id_sha256=u, email_sha256=e) for u, e in pairs
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    rows = DeletionReceiptBatch.objects.filter(job_id=job.pk).order_by("pk")
    assert [len(r.user_id_sha256) for r in rows] == [5000, 3]
    assert list(receipt_entries(job.pk)) == pairs

    # And back: one row a profile again, in the same order.
    executor = MigrationExecutor(connection)
    executor.migrate([("segments", "0015_deletion_runner")])
    old = executor.loader.project_state([("segments", "0015_deletion_runner")]).apps
    entry = old.get_model("segments", "DeletionReceiptEntry")
    back = entry.objects.filter(job_id=job.pk).order_by("pk")
    assert list(back.values_list("user_id_sha256", "email_sha256")) == pairs
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert list(receipt_entries(job.pk)) == pairs

"""The deletions page, the segment list's deletion status, and the counts a
deletion leaves behind."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from segments.deletion import services as deletion
from segments.deletion.selectors import HISTORY_PAGE_SIZE
from segments.models import DeletionJob, DeletionNotice, Segment
from tests.segments.factories import SegmentFactory
from tests.segments.population import build_population

pytestmark = pytest.mark.django_db

URL = "/segments/deletions/"


def job(segment, status="completed", **fields):
    return DeletionJob.objects.create(
        segment=segment,
        segment_name=segment.name if segment else "Gone segment",
        created_by_username="alice",
        status=status,
        **fields,
    )


def test_it_lists_every_deletion_newest_first_with_its_counts(viewer_client):
    trial, churned = SegmentFactory(name="Trial users"), SegmentFactory(name="Churned")
    older = job(trial, total=48310, deleted=48310)
    newer = job(churned, "running", total=200, deleted=50, deferred_profile_ids=[7, 8])
    gone = job(None, "failed", total=10, deleted=4)
    response = viewer_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    rows = [html.index(f'data-testid="deletion-{j.pk}"') for j in (gone, newer, older)]
    assert rows == sorted(rows)
    assert f'href="/segments/{trial.pk}/#deletion">Trial users</a>' in html
    assert "48,310" in html and "by alice" in html
    assert '<progress max="100" value="25"' in html
    assert "segment deleted since" in html
    assert "6 left: resume or close it on the segment page" in html


def test_it_polls_while_a_deletion_runs_and_stops_when_none_does(viewer_client):
    segment = SegmentFactory()
    running = job(segment, "running", total=10, deleted=2)
    html = viewer_client.get(URL).content.decode()
    assert 'hx-trigger="every 2s"' in html and "1 deletion in progress" in html

    DeletionJob.objects.filter(pk=running.pk).update(status="completed", deleted=10)
    partial = viewer_client.get(URL, headers={"HX-Request": "true", "HX-Target": "deletion-jobs"})
    assert partial.status_code == 200
    text = partial.content.decode()
    assert text.lstrip().startswith('<section id="deletion-jobs"')
    assert "hx-trigger" not in text and "<html" not in text


def test_the_status_filter_shows_only_those_deletions(viewer_client):
    segment = SegmentFactory()
    done, failed = job(segment), job(segment, "failed", total=3, deleted=1)
    pending = job(SegmentFactory(), "pending")
    html = viewer_client.get(URL, {"status": "failed"}).content.decode()
    assert f"deletion-{failed.pk}" in html and f"deletion-{done.pk}" not in html
    html = viewer_client.get(URL, {"status": "active"}).content.decode()
    assert f"deletion-{pending.pk}" in html and f"deletion-{failed.pk}" not in html
    html = viewer_client.get(URL, {"status": "cancelled"}).content.decode()
    assert "No deletion is stopped." in html


def test_a_bad_filter_answers_400_with_the_reason_and_every_deletion(viewer_client):
    done = job(SegmentFactory())
    response = viewer_client.get(URL, {"status": "<script>x"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "“&lt;script&gt;x” is not a status to filter by; showing every deletion." in html
    assert f"deletion-{done.pk}" in html and "<script>x" not in html


@pytest.mark.parametrize("before", ["abc", "-3", "0", "9" * 30])
def test_a_bad_page_address_answers_400(viewer_client, before):
    response = viewer_client.get(URL, {"before": before})
    assert response.status_code == 400
    assert "That page address is not valid" in response.content.decode()


def test_pages_go_back_by_id_with_a_constant_number_of_queries(viewer_client):
    segment = SegmentFactory()
    DeletionJob.objects.bulk_create(
        DeletionJob(segment=segment, segment_name=segment.name, status="completed")
        for _ in range(HISTORY_PAGE_SIZE + 5)
    )
    newest = DeletionJob.objects.order_by("-id")[0]
    with CaptureQueriesContext(connection) as first_page:
        html = viewer_client.get(URL).content.decode()
    assert html.count('data-testid="deletion-') == HISTORY_PAGE_SIZE
    boundary = newest.pk - HISTORY_PAGE_SIZE + 1
    assert f"?before={boundary}" in html
    html = viewer_client.get(URL, {"before": boundary}).content.decode()
    assert html.count('data-testid="deletion-') == 5
    assert "« Newest" in html and "Older \u203a" not in html
    # Session, user, permissions, the page, its total: not one query per row.
    assert len(first_page.captured_queries) <= 7, [q["sql"] for q in first_page.captured_queries]


def test_the_pager_says_where_you_are_and_goes_both_ways(viewer_client):
    segment = SegmentFactory()
    DeletionJob.objects.bulk_create(
        DeletionJob(segment=segment, segment_name=segment.name, status="completed")
        for _ in range(2 * HISTORY_PAGE_SIZE + 5)
    )
    DeletionJob.objects.create(segment=segment, segment_name=segment.name, status="failed")
    ids = list(DeletionJob.objects.order_by("-id").values_list("pk", flat=True))
    n = HISTORY_PAGE_SIZE
    html = viewer_client.get(URL).content.decode()
    assert f"Deletions 1\u2013{n} of {2 * n + 6} · page 1 of 3" in html
    assert "\u2039 Newer" not in html
    second = ids[n - 1]
    html = viewer_client.get(URL, {"before": second}).content.decode()
    assert f"Deletions {n + 1}\u2013{2 * n} of {2 * n + 6} · page 2 of 3" in html
    assert f"?before={ids[2 * n - 1]}" in html and "Older \u203a" in html
    third = ids[2 * n - 1]
    html = viewer_client.get(URL, {"before": third}).content.decode()
    assert f"Deletions {2 * n + 1}\u2013{2 * n + 6} of {2 * n + 6} · page 3 of 3" in html
    assert f'href="?before={second}" rel="prev">\u2039 Newer' in html
    assert "Older \u203a" not in html
    # A filter counts only what it shows.
    html = viewer_client.get(URL, {"status": "completed", "before": third}).content.decode()
    assert f"Deletions {2 * n}\u2013{2 * n + 5} of {2 * n + 5}" in html


def test_it_says_when_an_email_could_not_be_sent(viewer_client):
    failed = job(SegmentFactory(), total=1, deleted=1)
    DeletionNotice.objects.create(
        job=failed, ending=1, status="completed", total=1, deleted=1, skipped=0, state="failed"
    )
    assert "email not sent" in viewer_client.get(URL).content.decode()


def test_it_requires_a_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_it_requires_view_access(outsider_client):
    assert outsider_client.get(URL).status_code == 403


def test_it_only_answers_get(viewer_client):
    assert viewer_client.post(URL).status_code == 405


def test_the_main_navigation_links_to_it_for_those_who_may_see_it(viewer_client, charlie):
    html = viewer_client.get("/segments/").content.decode()
    assert f'href="{URL}"' in html
    page = viewer_client.get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">Deletions</a>' in page
    assert page.count('aria-current="page"') == 1  # not Segments as well


# --- The segment list ------------------------------------------------------------


def test_the_segment_list_marks_running_and_unfinished_deletions(viewer_client):
    running, failed, stopped, closed, done, _quiet = (
        SegmentFactory(name=name)
        for name in ("Running", "Failed", "Stopped", "Closed", "Done", "Quiet")
    )
    job(running, "running", total=5)
    job(failed, "failed", total=5, deleted=2)
    job(stopped, "cancelled", total=5, deleted=1)
    job(closed, "cancelled", total=5, deleted=1, closed_at=timezone.now())
    job(done, total=5, deleted=5)
    html = viewer_client.get("/segments/").content.decode()
    assert html.count('data-testid="deletion-badge"') == 3
    assert "Deleting profiles…" in html
    assert "Deletion failed" in html and "Deletion stopped part-way" in html
    assert f'href="/segments/{failed.pk}/#deletion" data-testid="deletion-badge"' in html


def test_the_segment_list_takes_the_same_queries_for_many_segments(viewer_client):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get("/segments/").status_code == 200
        return len(captured.captured_queries)

    job(SegmentFactory(), "running", total=5)
    few = queries()
    for _ in range(10):
        job(SegmentFactory(), "failed", total=5, deleted=1)
    assert queries() == few


# --- Counts that stay true ---------------------------------------------------------


def test_a_deletion_stopped_part_way_leaves_true_counts_on_every_segment_it_touched(alice):
    """Complete jobs are covered in test_deletion and test_deletion_held_profiles;
    a stopped one must recount too: its own segment and the others."""
    population = build_population(doomed=6, survivors=4, events_each=0)
    other = population.other_segment
    Segment.objects.filter(pk=other.pk).update(member_count=other.memberships.count())
    started = deletion.deletion_start(
        segment=population.segment, user=alice, typed_name="Trial users", expected_count=6
    ).job
    deletion.deletion_run_batch(job_id=started.pk, batch_size=3)
    deletion.deletion_cancel(job=started, user=alice)
    assert deletion.deletion_run(job_id=started.pk, slice_seconds=5) == "cancelled"
    for segment in (population.segment, other):
        segment.refresh_from_db()
        assert segment.member_count == segment.memberships.count()
    assert population.segment.member_count == 3

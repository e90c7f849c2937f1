"""Routes of the ingestion API; vero_admin/urls.py mounts ``vero`` at api/v2/
and ``segment`` at v1/."""

from django.urls import path, re_path

from profiles import api

vero = [
    path("heartbeat", api.heartbeat, name="api_heartbeat"),
    path("users/track", api.users_track, name="api_users_track"),
    path("users/edit", api.users_edit, name="api_users_edit"),
    path("users/tags/edit", api.users_tags_edit, name="api_users_tags_edit"),
    path("users/reidentify", api.users_reidentify, name="api_users_reidentify"),
    path("users/unsubscribe", api.users_unsubscribe, name="api_users_unsubscribe"),
    path("users/resubscribe", api.users_resubscribe, name="api_users_resubscribe"),
    path("users/delete", api.users_delete, name="api_users_delete"),
    path("events/track", api.events_track, name="api_events_track"),
    re_path(r"^.*$", api.not_found),
]

SEGMENT_CALLS = ("identify", "track", "page", "screen", "group", "alias")

segment = [
    path("batch", api.segment_batch, name="segment_batch"),
    *(
        path(call, getattr(api, f"segment_{call}"), name=f"segment_{call}")
        for call in SEGMENT_CALLS
    ),
    # analytics.js in a browser posts each call to the first letter of its
    # type (/v1/t, /v1/i, /v1/p...), as text/plain with the key in the body.
    *(path(call[0], getattr(api, f"segment_{call}")) for call in SEGMENT_CALLS),
    re_path(r"^.*$", api.not_found),
]

from django.db.models import Count, Q

from profiles.models import ApiKey, Event, Profile, SubscriptionPreference


def profile_search(*, query: str = ""):
    """Profiles matching an exact user id or an email (prefix, case-insensitive)."""
    profiles = Profile.objects.all()
    query = query.strip()
    if query:
        profiles = profiles.filter(Q(user_id=query) | Q(email__istartswith=query))
    return profiles


def profile_recent_events(*, profile: Profile, limit: int = 50):
    return Event.objects.filter(profile=profile).order_by("-occurred_at")[:limit]


def profile_preferences(*, profile: Profile):
    return SubscriptionPreference.objects.filter(profile=profile).order_by("topic")


def profile_messages(*, profile: Profile, limit: int = 50):
    # Through the reverse relation: profiles is the ground floor and imports
    # no app above it.
    return (
        profile.messages.select_related("campaign")
        .annotate(
            opens=Count("activities", filter=Q(activities__kind="open")),
            clicks=Count("activities", filter=Q(activities__kind="click")),
        )
        .order_by("-sent_at")[:limit]
    )


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active (not revoked) key with this text, or None."""
    if not raw_key:
        return None
    return ApiKey.objects.filter(hashed_key=ApiKey.hash(raw_key), revoked_at__isnull=True).first()

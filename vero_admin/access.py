from django.core.exceptions import PermissionDenied

# The access levels admins hand out in Django admin, each by a group that
# migration 0001_groups creates, in the words the admin pages and the 403 page use.
NONE, VIEW, EDIT, FULL = "none", "view", "edit", "full"
VIEWERS = "Viewers"
EDITORS = "Editors"
ACCESS_LABELS = {NONE: "None", VIEW: "View", EDIT: "View and Edit", FULL: "Full (superuser)"}
ACCESS_DESCRIPTIONS = {
    NONE: "can log in, but sees nothing in the dashboard",
    VIEW: "sees segments, profiles, campaigns and their reports; cannot change anything",
    EDIT: "everything View sees, and creates, changes and deletes segments, "
    "and deletes a segment's profiles",
}
GROUP_DESCRIPTIONS = {
    VIEWERS: f"Gives View access: {ACCESS_DESCRIPTIONS[VIEW]}.",
    EDITORS: f"Gives View and Edit access: {ACCESS_DESCRIPTIONS[EDIT]}.",
}


def require_perms(user, *perms: str) -> None:
    """Raise PermissionDenied unless the (logged-in) user holds every permission."""
    if not user.has_perms(perms):
        raise PermissionDenied


def user_access(user) -> str:
    """The access level a user was given: FULL for a superuser, else EDIT,
    VIEW or NONE from the groups (Editors wins over Viewers)."""
    if not user.is_authenticated:
        return NONE
    if user.is_superuser:
        return FULL
    names = {group.name for group in user.groups.all()}
    if EDITORS in names:
        return EDIT
    if VIEWERS in names:
        return VIEW
    return NONE


def user_access_set(*, user, access: str) -> None:
    """Give ``user`` one access level by putting them in the Viewers or the
    Editors group (or neither), keeping any other group they are in.
    A superuser has full access whatever the groups, so is left alone."""
    from django.contrib.auth.models import Group

    if access not in (NONE, VIEW, EDIT):
        raise ValueError(f"Unknown access level: {access!r}")
    if user.is_superuser:
        return
    user.groups.remove(*Group.objects.filter(name__in=[VIEWERS, EDITORS]))
    if access != NONE:
        user.groups.add(Group.objects.get(name=EDITORS if access == EDIT else VIEWERS))

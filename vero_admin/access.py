from django.core.exceptions import PermissionDenied

# The two groups admins hand out (created by migration 0001_groups), and what
# each means, in the words the admin pages and the 403 page use.
VIEWERS = "Viewers"
EDITORS = "Editors"
GROUP_DESCRIPTIONS = {
    VIEWERS: "View access: can see segments, profiles, campaigns and their reports; "
    "cannot create, change or delete anything.",
    EDITORS: "View and Edit access: everything Viewers can see, plus creating, changing "
    "and deleting segments, and deleting a segment's profiles.",
}

NONE, VIEW, EDIT, FULL = "none", "view", "edit", "full"
ACCESS_LABELS = {NONE: "None", VIEW: "View", EDIT: "View and Edit", FULL: "Full (superuser)"}


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

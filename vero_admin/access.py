from django.core.exceptions import PermissionDenied


def require_perms(user, *perms: str) -> None:
    """Raise PermissionDenied unless the (logged-in) user holds every permission."""
    if not user.has_perms(perms):
        raise PermissionDenied

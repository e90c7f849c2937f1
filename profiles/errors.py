from django.http import Http404


class ProfileNotFound(Http404):
    """No profile with this id, or no longer.

    Carries the id so the site's 404 page can say that the profile was
    deleted, and by which deletion job when one erased it: the deletion jobs
    live in ``segments``, which this app may not import, so the lookup is
    done by ``vero_admin.views.page_not_found``.
    """

    def __init__(self, profile_id: int):
        super().__init__(f"No profile with id {profile_id}.")
        self.profile_id = profile_id

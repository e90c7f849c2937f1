from django.apps import AppConfig
from django.db.models.signals import pre_delete


def _segment_deleted(sender, instance, **kwargs):
    from messaging.services import audience_note_segment_deleted

    audience_note_segment_deleted(segment=instance)


class MessagingConfig(AppConfig):
    name = "messaging"

    def ready(self):
        # By the model's name: segments sit above messaging, which never imports them.
        pre_delete.connect(
            _segment_deleted, sender="segments.Segment", dispatch_uid="messaging_segment_deleted"
        )

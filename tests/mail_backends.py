"""Email backends for tests whose emails are sent by a real worker process,
where Django's test outbox cannot see them."""

import os
import signal
import smtplib

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.filebased import EmailBackend as FileBackend


class RefusingBackend(BaseEmailBackend):
    """A mail server that takes the connection and refuses every email."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPDataError(554, b"5.7.1 Refused for the test")


class UnreachableBackend(BaseEmailBackend):
    """A mail server that cannot be reached: nothing is ever handed over."""

    def open(self):
        raise ConnectionRefusedError(111, "Connection refused")

    def send_messages(self, email_messages):
        raise AssertionError("send_messages after a failed open()")


class DieOnceBackend(FileBackend):
    """The first send SIGKILLs its own process (as the OOM killer or a
    deploy would) before anything is written, and leaves a marker
    (TEST_MAIL_DIE_MARKER) saying so; later sends write files like Django's
    file backend."""

    def send_messages(self, email_messages):
        marker = os.environ["TEST_MAIL_DIE_MARKER"]
        if not os.path.exists(marker):
            with open(marker, "w") as out:
                out.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().send_messages(email_messages)

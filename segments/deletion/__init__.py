"""Deleting every profile in a segment.

``services`` is the one entry point that changes anything: the confirmation
view, the progress endpoint, the django-q2 task, the watchdog and the
benchmark all call its functions; ``batch`` builds the server-side function
that runs one batch in one call. ``selectors`` reads, ``checks`` verifies a
job's end state against the database (``manage.py verify_deletion``),
``views`` / ``forms`` / ``urls`` are the pages, and ``benchmark`` measures the
job against the physical floor.
"""

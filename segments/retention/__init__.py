"""Retention schedules: delete a segment's members automatically.

``services`` (create, pause, resume, delete; the dispatcher and the run),
``selectors`` (the dry run, what the pages show), ``notices`` (the brake's
email), ``views`` / ``urls`` / ``forms`` (the pages).
"""

"""The realtime sidecar: a Flask app that scores fraud at authorization time.

``serving.app.create_app()`` builds it; ``skewless serve`` runs it under gunicorn (see README.md).
Features come from the one declaration (``skewless/features.py``) in three modes: ``materialized``
(Feast's Redis layout, read directly), ``exact`` (raw events kept in Redis, windows computed at
request time) and ``streaming`` (the ``*_stream`` views that ``skewless stream-consumer`` pushes
through Feast push sources, read like the materialized ones).
"""

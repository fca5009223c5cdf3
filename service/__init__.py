"""The web service: WispHub change notifications and manual triggers in, per-client jobs out.

The app factory is `service.app.create_app()`; gunicorn serves `'service.app:create_app()'` with
the settings in `service.gunicorn_conf`. This package imports nothing itself, so that gunicorn's
config is read before anything imports prometheus_client (see `service.gunicorn_conf`).
"""

"""gunicorn settings for the web process (the Procfile's `web`):

    gunicorn -c python:service.gunicorn_conf 'service.app:create_app()'

Binds to `$PORT` (8000) with `$WEB_CONCURRENCY` (2) workers of 4 threads. The access log names
the path without its query string, which may carry the notification secret (`?token=`).
gunicorn's error and access lines and the app's own go through `worker.logs`: one handler on
standard error, `LOG_LEVEL` and `LOG_FORMAT` (text or JSON) as in the other processes.

Metrics: every gunicorn worker keeps its own counters, so Prometheus' multiprocess mode is on.
The workers write them to `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory unless set),
whose counter files are removed when gunicorn starts; a worker that exits is marked dead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from worker import defaults, logs

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

bind = f"0.0.0.0:{os.environ.get('PORT', str(defaults.WEB_PORT))}"
workers = int(os.environ.get("WEB_CONCURRENCY", str(defaults.WEB_PROCESSES)))
threads = defaults.WEB_THREADS
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
logconfig_dict = logs.dict_config()

# Set before the workers import prometheus_client, which reads it at import time; a folder made
# here is removed when gunicorn exits.
made_folder = None
if not os.environ.get(MULTIPROC_ENV):
    made_folder = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="wisphub-bqn-sync-metrics-")


def on_starting(server: Any) -> None:
    """Start with no counters left by an earlier run of the service."""
    folder = Path(os.environ[MULTIPROC_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop the live gauges of a gunicorn worker that exited."""
    # imported here, after PROMETHEUS_MULTIPROC_DIR is set above
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder made for this run."""
    if made_folder is not None:
        shutil.rmtree(made_folder, ignore_errors=True)

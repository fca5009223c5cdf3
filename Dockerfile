# Two targets:
#   production (the default, last below): the service's code and its locked runtime dependencies,
#     nothing else; docker-compose.yml picks the Procfile entry each container runs.
#   sandbox: the same plus the simulators (the `sandbox` extra), for compose's sandbox profile.
FROM python:3.11-slim AS app

# tzdata: RECONCILE_CRON is read in the local time zone set by TZ. Debian's current tzdata
# (security and time-zone updates), so not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app

# The web process listens on every interface of the container: what reaches it is decided by
# the published port (docker-compose.yml: 127.0.0.1 only).
ENV WEB_HOST=0.0.0.0

WORKDIR /app
# Every package, the build backend included, at the version and hashes of requirements.lock
# (`make lock`); then the service alone, built with that backend.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md Procfile ./
COPY worker worker
COPY service service
# The pages' Spanish: the committed .po compiled into the .mo the package takes (Babel comes
# with the lock).
RUN pybabel compile --directory service/translations
# The simulators' command comes with the package but their code stays out of this image: it
# goes too, rather than failing with an import error (the sandbox target installs it again).
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && rm /usr/local/bin/wisphub-bqn-sandbox
COPY --chmod=0755 docker-entrypoint.sh /usr/local/bin/docker-entrypoint

USER 10001
EXPOSE 8000
# The web process answers /healthz (docker-compose.yml gives the worker its own check and
# turns this one off for the scheduler). No proxy: the check talks to the container itself.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
# `docker-entrypoint NAME` runs the Procfile's entry NAME.
ENTRYPOINT ["docker-entrypoint"]
CMD ["web"]


FROM app AS sandbox
USER 0
COPY sandbox sandbox
# The simulators' extra, never in production: not locked (the runtime packages stay as locked).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-build-isolation '.[sandbox]'
USER 10001


FROM app AS production

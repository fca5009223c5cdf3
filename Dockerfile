# One image for every process; docker-compose.yml picks the Procfile entry to run.
FROM python:3.11-slim

# tzdata: RECONCILE_CRON is read in the local time zone set by TZ.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 app

WORKDIR /app
COPY pyproject.toml requirements.lock README.md Procfile ./
COPY worker worker
COPY service service
COPY sandbox sandbox
RUN pip install --no-cache-dir -c requirements.lock '.[sandbox]'

USER app
EXPOSE 8000
# `honcho start <name>` runs that Procfile entry, so the Procfile stays the one place where
# the commands are written.
ENTRYPOINT ["honcho", "--no-colour", "--no-prefix", "start", "--port", "8000"]
CMD ["web"]

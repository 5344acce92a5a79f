# chatbots in a container: `chatbots run` as an unprivileged user; SQLite on the /data volume unless DATABASE_URL is set.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/chatbots/bin:$PATH \
    CHATBOTS_DB=/data/chatbots.db \
    PORT=8080

# The package and its dependencies in a virtualenv; the source is needed only to build it.
COPY pyproject.toml README.md /tmp/chatbots/
COPY chatbots /tmp/chatbots/chatbots
COPY adapters /tmp/chatbots/adapters
RUN python -m venv /opt/chatbots \
    && /opt/chatbots/bin/pip install --no-cache-dir /tmp/chatbots \
    && rm -rf /tmp/chatbots \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin chatbots \
    && mkdir /data \
    && chown chatbots:chatbots /data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# No curl in the slim image: Python asks /healthz, which turns 503 while stopping or without its database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

# Exec form: chatbots is PID 1 and receives SIGTERM itself (it drains replies in flight for up to 20 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["chatbots"]
CMD ["run"]

# Home Mind server. Build: docker build -t homemind .
# Release step (once per deploy, before new instances start): homemind-server migrate
FROM python:3.13-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY homemind_client ./homemind_client
COPY cloud_server ./cloud_server
RUN python -m venv /opt/homemind \
    && /opt/homemind/bin/pip install --no-cache-dir -c constraints.txt '.[server]'

FROM python:3.13-slim
# pg_dump/pg_restore for `homemind-server backup` / `restore` on PostgreSQL.
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home homemind
COPY --from=build /opt/homemind /opt/homemind
ENV PATH=/opt/homemind/bin:$PATH \
    HOMEMIND_HOST=0.0.0.0 \
    HOMEMIND_PORT=8080 \
    HOMEMIND_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
USER homemind
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["homemind-server", "serve"]

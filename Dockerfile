# Izzi Gateway: a slim image that runs as a non-root user.
#   docker build -t izzi-gateway .
#   docker run -p 8080:8080 -e IZZI_ADMIN_TOKEN=… -e OPENAI_API_KEY=… izzi-gateway
# With Redis and PostgreSQL beside it: deploy/compose.yaml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY izzi_proxy ./izzi_proxy
COPY plugins ./plugins
RUN python -m venv /opt/izzi \
 && /opt/izzi/bin/pip install --no-cache-dir . plugins/openai plugins/anthropic plugins/gemini plugins/mock \
    plugins/vietqr plugins/cryptomus plugins/lolzteam

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/izzi --create-home izzi
COPY --from=build /opt/izzi /opt/izzi
COPY config /etc/izzi
ENV PATH=/opt/izzi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IZZI_HOST=0.0.0.0 \
    IZZI_DATABASE_URL=sqlite:////var/lib/izzi/izzi.sqlite3
USER izzi
WORKDIR /var/lib/izzi
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"
# One worker per core when the limits are in Redis (IZZI_REDIS_URL), else one process.
CMD ["izzi-proxy", "serve", "--config", "/etc/izzi/izzi.toml"]

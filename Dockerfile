# syntax=docker/dockerfile:1
# The dispatch server in a small image: the pages built by node, the Python environment built
# in a full stage, and only the virtualenv copied into a slim runtime run by a non-root user.

# ---------------------------------------------------------------- pages (web/ -> dispatch/static)
FROM node:22-bookworm-slim AS pages
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
# build.mjs writes the bundles to ../dispatch/static
RUN npm run build

# ---------------------------------------------------------------- Python environment
# Python 3.11: 3.12 and 3.13 run a report with more CPU (docs/performance.md, "The interpreter").
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/dispatch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alerts/ alerts/
COPY geo/ geo/
COPY dispatch/ dispatch/
COPY migrations/ migrations/
COPY --from=pages /src/dispatch/static/ dispatch/static/
# Every dependency ships manylinux wheels (shapely, pyproj, numpy, asyncpg, argon2, uvloop):
# no compiler in any stage.
RUN /opt/dispatch/bin/pip install . \
 && /opt/dispatch/bin/python -c "import dispatch.app, geo.crs; print('ok')"

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="dispatch-135" \
      org.opencontainers.image.description="Real-time incident dispatch enforcing the 1-3-5 minute response chain"
RUN groupadd --system dispatch \
 && useradd --system --gid dispatch --home-dir /var/lib/dispatch --shell /usr/sbin/nologin dispatch \
 && mkdir -p /var/lib/dispatch \
 && chown dispatch:dispatch /var/lib/dispatch
COPY --from=build /opt/dispatch /opt/dispatch
ENV PATH=/opt/dispatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DISPATCH_DATABASE_URL=sqlite+aiosqlite:////var/lib/dispatch/dispatch.db \
    DISPATCH_SECRET_FILE=/var/lib/dispatch/secret.key
WORKDIR /var/lib/dispatch
VOLUME ["/var/lib/dispatch"]
USER dispatch
EXPOSE 8000
# No curl in a slim image; Python is there anyway.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["dispatch", "serve", "--host", "0.0.0.0", "--port", "8000"]

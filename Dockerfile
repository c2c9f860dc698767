# syntax=docker/dockerfile:1
#
# Statistics Manager image: one image, three uses (the role is chosen by the command):
#   python -m statistics_manager_service [--role all|api|worker] [--demo]   (default CMD: --role all)
#   statistics-manager db upgrade                                           (schema migrations)
#
# Build from the repository root:  docker build -t statistics-manager:local .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# Stage 1: install the locked runtime dependencies and the package into a virtualenv.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, so code changes do not invalidate this (slow) layer: the hashed locks made by
# scripts/lock.sh, pip and setuptools first, then every runtime package, each file checked.
COPY locks/build.txt locks/runtime.txt ./locks/
RUN pip install --require-hashes -r locks/build.txt \
    && pip install --require-hashes -r locks/runtime.txt

# The package itself, without re-resolving dependencies (they are locked above) and built with the
# locked setuptools. Tests are not part of the image (see .dockerignore).
COPY setup.py pyproject.toml README.md LICENSE requirements.txt service-specific-requirements.txt \
     demo-requirements.txt ./
COPY statistics_manager_service ./statistics_manager_service
# Smoke test of the installed package (not the source tree): the migrations it ships apply.
RUN pip install --no-deps --no-build-isolation . \
    && python -m compileall -q /opt/venv/lib \
    && cd /tmp \
    && DATABASE_URL=sqlite:////tmp/smoke.db statistics-manager db upgrade \
    && rm -f /tmp/smoke.db /tmp/statistics-manager.jwt-key

# ---------------------------------------------------------------------------------------------
# Stage 2: the runtime image: the virtualenv only, no build tools, an unprivileged user.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The source revision, for GET /api/statistics/version and statistics_build_info:
#   docker build --build-arg GIT_REVISION=$(git rev-parse HEAD) -t statistics-manager .
ARG GIT_REVISION=unknown

LABEL org.opencontainers.image.title="statistics-manager" \
      org.opencontainers.image.description="Energy statistics of FlexiHome households over REST" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    GIT_REVISION=${GIT_REVISION}

RUN groupadd --system --gid 10001 statistics \
    && useradd --system --uid 10001 --gid statistics --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin statistics \
    && install -d -o statistics -g statistics -m 0750 /app

COPY --from=build /opt/venv /opt/venv

# The working directory is writable by the service user only so that the embedded SQLite
# default (./statistics.db) works for a quick `docker run`; production sets DATABASE_URL.
WORKDIR /app
USER 10001:10001

EXPOSE 8080

# Liveness of the HTTP server (no curl in slim images: plain urllib, proxies ignored).
HEALTHCHECK --interval=30s --timeout=5s --start-period=40s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; o = r.build_opener(r.ProxyHandler({})); o.open('http://127.0.0.1:%s/api/statistics/health' % os.environ.get('PORT', '8080'), timeout=4).read()"]

CMD ["python", "-m", "statistics_manager_service"]

# One image per service:
#
#   docker build --build-arg SERVICE=order -t saga-order .
#
# SERVICE is order, payment, inventory, fare, accounting or saga_log (the saga history,
# saga_log/recorder). A service's image holds contracts, the runtime (saga_log/runtime)
# and that one service's code: nothing of the other services, the history, the operator
# tools or the generators.

# The base image of every stage. A tag moves when it is republished; to pin the exact
# image, give its digest, which a registry resolves and the build then verifies:
#
#   docker buildx imagetools inspect python:3.12-slim     # prints "Digest: sha256:..."
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim@sha256:<digest> ...
#
# (or put that reference here as the default; Dependabot or Renovate keep such a pin
# current). The default stays a tag because a digest can only be checked against the
# registry that published it.
ARG PYTHON_IMAGE=python:3.12-slim

# Only the chosen service's folder goes on (the history's for saga_log): COPY cannot be
# conditional, so the choice is made here.
FROM ${PYTHON_IMAGE} AS code
ARG SERVICE
COPY services/ /src/services/
COPY saga_log/recorder/ /src/saga_log/recorder/
RUN case "${SERVICE}" in \
      order|payment|inventory|fare|accounting) \
        mkdir -p /out/services && cp /src/services/__init__.py /out/services/ \
        && cp -r "/src/services/${SERVICE}" /out/services/ ;; \
      saga_log) mkdir -p /out/saga_log && cp -r /src/saga_log/recorder /out/saga_log/ ;; \
      *) echo "build with --build-arg SERVICE=order|payment|inventory|fare|accounting|saga_log" >&2; exit 1 ;; \
    esac

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Dependencies before code, so that this layer is rebuilt only when they change, and
# shared by every image: SERVICE is declared only further down, because a build
# argument in scope is part of the cache key of every RUN that follows it. They come from
# requirements.lock (scripts/lock.sh writes it from pyproject.toml): the runtime
# dependencies only, every one at an exact version, and pip refuses any file whose sha256
# is not the one in the lock, or any dependency the lock does not name.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock

RUN groupadd --system --gid 10001 saga \
    && useradd --system --uid 10001 --gid saga --no-create-home --home-dir /app --shell /usr/sbin/nologin saga

# The shared packages, the same in every image. The code runs from /app (the working
# directory is on sys.path under `python -m`); it stays owned by root, read-only for the
# service.
COPY contracts/ contracts/
COPY saga_log/__init__.py saga_log/
COPY saga_log/runtime/ saga_log/runtime/
RUN python -m compileall -q contracts saga_log

ARG SERVICE
ENV SERVICE=${SERVICE}
COPY --from=code /out/ ./
RUN python -m compileall -q .

USER 10001

# Each service listens on its own *_HTTP_PORT: order 8000, payment 8001, inventory 8002,
# fare 8003, accounting 8004, saga_log 8080 (no EXPOSE, since it would have to name them
# all; compose publishes the right one).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; s = os.environ['SERVICE']; p = os.environ.get(s.upper() + '_HTTP_PORT') or {'order': '8000', 'payment': '8001', 'inventory': '8002', 'fare': '8003', 'accounting': '8004', 'saga_log': '8080'}[s]; urllib.request.urlopen(f'http://127.0.0.1:{p}/health', timeout=4)"

# exec: python is PID 1 and receives SIGTERM from `docker stop` directly.
CMD if [ "$SERVICE" = saga_log ]; then exec python -m saga_log.recorder; else exec python -m "services.${SERVICE}"; fi

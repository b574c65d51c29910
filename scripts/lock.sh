#!/usr/bin/env bash
# Regenerates the two lock files from pyproject.toml, every transitive dependency at an
# exact version with the sha256 of each of its files on PyPI:
#
#   requirements-test.lock   the dependencies, the `test` extra, and pip and setuptools
#                            (the build backend of `pip install --no-build-isolation -e .`):
#                            what `make install` (and so CI) installs
#   requirements.lock        the runtime dependencies only, at the same versions (compiled
#                            with the test lock as constraints): what the Dockerfile installs
#
#   scripts/lock.sh                              # keep the current pins where they still fit
#   scripts/lock.sh --upgrade                    # every package to its newest allowed release
#   scripts/lock.sh --upgrade-package starlette  # one package (repeatable)
#
# Both locks are universal (uv's --universal): one file for every Python >= 3.11 the
# project supports and every platform, each line with its environment marker, so the same
# file serves the 3.11 dev venv, CI and the python:3.12-slim image.
#
# The tool is uv, at a fixed version so the output does not drift: the one on PATH if it is
# that version, else it is installed into a venv of its own ($LOCK_TOOLS, under /tmp), never
# into the project's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tools=${LOCK_TOOLS:-${TMPDIR:-/tmp}/saga-lock-tools}
uv=$(command -v uv || true)
if [[ -z "$uv" || "$("$uv" --version)" != "uv $UV_VERSION"* ]]; then
  uv=$tools/bin/uv
  if [[ ! -x "$uv" || "$("$uv" --version)" != "uv $UV_VERSION"* ]]; then
    echo "lock: installing uv $UV_VERSION into $tools" >&2
    "${PYTHON:-python3}" -m venv "$tools"
    "$tools/bin/pip" install -q "uv==$UV_VERSION"
  fi
fi

compile() {
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --index-url https://pypi.org/simple --custom-compile-command scripts/lock.sh "$@"
}

# pip and setuptools come in on stdin: the project does not depend on them, but the dev
# install uses them (setuptools is the build backend, run without build isolation so that
# it too is the hashed one from the lock).
printf 'pip\nsetuptools>=75\n' \
  | compile pyproject.toml - --extra test --output-file requirements-test.lock "$@"
compile pyproject.toml --constraint requirements-test.lock --output-file requirements.lock "$@"
echo "lock: wrote requirements-test.lock and requirements.lock" >&2

#!/usr/bin/env bash
# Regenerates bench/peers/restate.lock and dbos.lock (every transitive dependency at an
# exact version, with the sha256 of each file) from restate.in and dbos.in, with the same
# uv as scripts/lock.sh (which installs it if needed; see there).
set -euo pipefail
cd "$(dirname "$0")/../.."
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
for peer in restate dbos; do
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --index-url https://pypi.org/simple --custom-compile-command "bash bench/peers/lock.sh" \
    "bench/peers/$peer.in" -o "bench/peers/$peer.lock"
done

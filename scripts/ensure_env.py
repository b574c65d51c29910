"""Make sure `.env` (beside docker-compose.yml, read by `make up` and `make dev`) holds the
secrets a fresh clone does not have: the keys that seal the fare saga's card fields.

An existing value is kept (rotating is a deliberate act: see the README's Security notes);
a missing one is generated, never printed, and written to `.env` only (git ignores it)."""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".env"


def new_key_setting(key_id: str) -> str:
    # The format of contracts.secrets.FieldCipher.from_setting; the standard library only,
    # so that `make up` runs before any virtualenv exists.
    return f"{key_id}={base64.b64encode(os.urandom(32)).decode()}"


def main() -> int:
    lines = ENV.read_text().splitlines() if ENV.exists() else []
    if any(line.startswith("SAGA_FIELD_KEYS=") for line in lines):
        return 0
    lines.append(f"SAGA_FIELD_KEYS={new_key_setting('k1')}")
    ENV.write_text("\n".join(lines) + "\n")
    ENV.chmod(0o600)
    print(f"wrote a new SAGA_FIELD_KEYS to {ENV} (the keys that seal card fields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

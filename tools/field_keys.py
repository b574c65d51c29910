"""Print a fresh `SAGA_FIELD_KEYS` value (one random 256-bit key, id `k1` or the one given):

    python -m tools.field_keys [KEY_ID]

To rotate: put the new key first and keep the old ones after it until no message sealed
with them is left in flight or parked; then drop them."""

import sys

from contracts.secrets import new_key_setting

if __name__ == "__main__":
    print(new_key_setting(sys.argv[1] if len(sys.argv) > 1 else "k1"))

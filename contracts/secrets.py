"""Secret fields: masked wherever people look, sealed wherever they travel or rest.

A field annotated `Secret()` in a message model (the fare saga's card number, expiry and
CVV) is never stored, logged or shown in clear:

- `mask` replaces every secret field of a JSON document with `***` (the history, dead
  letters and the operator tools use it);
- `FieldCipher` seals a field for the services that need it (authenticated encryption,
  AES-GCM from the `cryptography` package), bound to the saga and the field's name so a
  sealed value cannot be moved to another saga or field. Keys come from the environment
  with a key id (`SAGA_FIELD_KEYS="k2=<base64>,k1=<base64>"`: the first one seals, all of
  them open), so keys can rotate: add a new key first in the list, keep the old ones until
  no sealed message of theirs is left in flight.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel

from contracts.envelope import Secret

MASK = "***"
SEALED_PREFIX = "sealed:v1:"


def secret_fields(models: Iterable[type[BaseModel]]) -> frozenset[str]:
    """The names of the fields annotated `Secret()` in `models`."""
    return frozenset(
        name
        for model in models
        for name, info in model.model_fields.items()
        if any(isinstance(meta, Secret) for meta in info.metadata)
    )


def mask(value: Any, secrets: frozenset[str]) -> Any:
    """`value` (a JSON document) with every field named in `secrets` replaced by `***`,
    at any depth."""
    if isinstance(value, dict):
        return {
            key: (MASK if key in secrets and item is not None else mask(item, secrets))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask(item, secrets) for item in value]
    return value


def masked_body(body: bytes, secrets: frozenset[str]) -> bytes:
    """A message body as people may see it: `mask`ed if it is JSON; if it is not (a trailing
    comma typed into a form), any `"<secret field>": value` in it masked by pattern."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return _masked_text(body, secrets)
    try:
        masked = mask(data, secrets)
    except RecursionError:  # nested deeper than Python recurses: mask it as text
        return _masked_text(body, secrets)
    return body if masked == data else json.dumps(masked).encode()


def _masked_text(body: bytes, secrets: frozenset[str]) -> bytes:
    if not secrets:
        return body
    names = "|".join(re.escape(name) for name in sorted(secrets))
    value = r'"(?:[^"\\]|\\.)*"|[^,}\]\s]+'
    pattern = re.compile(rf'("(?:{names})"\s*:\s*)(?:{value})')
    text = body.decode("utf-8", "replace")
    return pattern.sub(lambda m: f'{m.group(1)}"{MASK}"', text).encode()


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def field_context(saga_id: str, name: str) -> str:
    """What a sealed field is bound to: its saga and its name (it opens nowhere else)."""
    return f"{saga_id}|{name}"


class CipherError(ValueError):
    """A sealed field that cannot be opened: an unknown key id, or a value that was
    tampered with or moved from another saga or field."""


class FieldCipher:
    """Seals and opens secret fields; see the module docstring."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current key id {current!r} has no key")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise ValueError(f"field key {key_id!r} must be 32 bytes (256 bits)")
            if not key_id.isalnum():
                raise ValueError(f"field key id {key_id!r} must be letters and digits")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._current = current

    @classmethod
    def from_setting(cls, setting: str) -> FieldCipher:
        """From `SAGA_FIELD_KEYS`: `id=base64key[,id=base64key...]`, the first one current."""
        keys: dict[str, bytes] = {}
        for part in (p.strip() for p in setting.split(",")):
            if not part:
                continue
            key_id, _, encoded = part.partition("=")
            try:
                keys[key_id.strip()] = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise ValueError(f"SAGA_FIELD_KEYS: key {key_id!r} is not base64") from None
        if not keys:
            raise ValueError(
                "SAGA_FIELD_KEYS is empty: the card fields of the fare saga are sealed with "
                "it. Make one with `python -m tools.field_keys` (make up and make dev do)."
            )
        return cls(keys, next(iter(keys)))

    def seal(self, value: str, *, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, value.encode(), context.encode())
        token = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{SEALED_PREFIX}{self._current}:{token}"

    def seal_fields(
        self, data: Mapping[str, Any], names: Iterable[str], *, saga_id: str
    ) -> dict[str, Any]:
        """`data` with each of the fields `names` that holds a clear string sealed (those
        already sealed are left as they are)."""
        sealed = dict(data)
        for name in names:
            value = sealed.get(name)
            if isinstance(value, str) and not is_sealed(value):
                sealed[name] = self.seal(value, context=field_context(saga_id, name))
        return sealed

    def open_field(self, value: str, *, saga_id: str, name: str) -> str:
        return self.open(value, context=field_context(saga_id, name))

    def open(self, sealed: str, *, context: str) -> str:
        if not sealed.startswith(SEALED_PREFIX):
            raise CipherError("not a sealed field")
        key_id, _, token = sealed.removeprefix(SEALED_PREFIX).partition(":")
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise CipherError(f"no key {key_id!r} to open a sealed field with")
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return cipher.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise CipherError(
                "a sealed field does not open: tampered, or not for this saga"
            ) from None


def new_key_setting(key_id: str = "k1") -> str:
    """A fresh `SAGA_FIELD_KEYS` value with one random 256-bit key."""
    return f"{key_id}={base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"

"""Secrets kept at rest under the configured key (``DARKROOM_SECRETS_KEY``): auth's API secrets,
reports's provider tokens. One box, so there is one way to seal, one way to rotate."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class SecretBox:
    """AES-GCM encryption of secrets at rest, under the configured key."""

    def __init__(self, key_b64: str) -> None:
        try:
            key = base64.b64decode(key_b64, validate=True)
        except binascii.Error as exc:
            raise ValueError("DARKROOM_SECRETS_KEY must be base64") from exc
        if len(key) != 32:
            raise ValueError("DARKROOM_SECRETS_KEY must decode to 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context`` (the row's id, so rows cannot be swapped)."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context)

    def open(self, sealed: bytes, context: bytes) -> str:
        """Decrypt what :meth:`seal` made; raises ``ValueError`` when it was tampered with."""
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], context).decode()
        except InvalidTag as exc:
            raise ValueError("sealed secret does not verify") from exc

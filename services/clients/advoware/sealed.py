"""The Advoware token as Redis keeps it: sealed with AES-256-GCM under a key derived from the
Advoware API key (HKDF-SHA256), so whoever can read Redis (a dump, a replica, `MONITOR`, another
tenant of a shared server) but does not hold the API key cannot use the token. Knows nothing of
Motia.

Why sealed rather than kept in each process's memory only: every worker process (and every
engine of a scale-out) shares one gateway login, and the rule "a 401 from Advoware causes at
most one login per token and interval" (token.TokenProvider.invalidate) holds across
processes only through the shared record of the token and its age.

Stored value (JSON): `{"v": 2, "id": <token id>, "sealed": <base64(nonce | ciphertext)>}`
- `sealed`: the token document (token.CachedToken) encrypted with a fresh 96-bit nonce; the
  cache key is the associated data, so a value copied under another key does not open.
- `id`: HMAC-SHA256 of the access token under a second derived key (hex). It lets
  `invalidate` drop the entry with a Lua compare without the key, and tells nothing about the
  token.
A value that does not open (the plaintext format of before, another API key, anything else) is
a cache miss: the token is fetched again and the value replaced.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEALED_FORMAT = 2
"""`v` of a sealed value (the plaintext JSON of before had none)."""
_NONCE_BYTES = 12
_SEAL_INFO = b"bitbylaw-motia advoware token cache: seal v2"
_ID_INFO = b"bitbylaw-motia advoware token cache: id v2"


def _derive(api_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(api_key)


class TokenSeal:
    """Seals and opens the cached token document of one cache key (see the module docstring)."""

    def __init__(self, api_key: bytes, cache_key: str) -> None:
        """`api_key`: the decoded Advoware API key (the HMAC key of the token request)."""
        self._aead = AESGCM(_derive(api_key, _SEAL_INFO))
        self._id_key = _derive(api_key, _ID_INFO)
        self._aad = cache_key.encode()

    def token_id(self, access_token: str) -> str:
        """The stored `id` of `access_token`."""
        return hmac.new(self._id_key, access_token.encode(), hashlib.sha256).hexdigest()

    def seal(self, access_token: str, document: str) -> str:
        """The Redis value for `document` (the token's JSON), which holds `access_token`."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, document.encode(), self._aad)
        return json.dumps(
            {"v": SEALED_FORMAT, "id": self.token_id(access_token), "sealed": base64.b64encode(sealed).decode("ascii")}
        )

    def open(self, raw: str | bytes) -> str | None:
        """The document a value sealed, or None when it is not one this key sealed."""
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("v") != SEALED_FORMAT:
                return None
            blob = base64.b64decode(str(doc["sealed"]), validate=True)
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._aad)
            return plain.decode()
        except (ValueError, KeyError, TypeError, InvalidTag):
            return None

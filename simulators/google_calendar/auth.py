"""Google Calendar simulator: the OAuth2 JWT-bearer assertion check (RS256 over `header.payload`, iss/scope/aud/exp)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_assertion(assertion: str, public_key: Any) -> dict[str, Any]:
    """Decode and check a JWT-bearer assertion; raises ValueError with the OAuth error text."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("Invalid JWT: cannot decode") from exc
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise ValueError("Invalid JWT: alg must be RS256")
    if not isinstance(payload, dict):
        raise ValueError("Invalid JWT: payload is not an object")  # noqa: TRY004 - the token route answers ValueError with 400
    for claim in ("iss", "scope", "aud", "exp"):
        if not payload.get(claim):
            raise ValueError(f"Invalid JWT: missing claim {claim}")
    now = time.time()
    exp = float(payload["exp"])
    iat = float(payload.get("iat", now))
    if exp <= now or exp - iat > 3600 + 300 or iat > now + 300:
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
    if public_key is not None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise ValueError("Invalid JWT Signature.") from exc
    return payload



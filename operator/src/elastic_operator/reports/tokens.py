"""Per-job report tokens: HMAC-SHA256(operator key, job uid).

The operator needs no stored state and no Secret read access to check a token: it recomputes it. Each job's token
is also written into a Secret the job's pods read through `secretKeyRef`, so it never appears in a pod spec.
"""

from __future__ import annotations

import hashlib
import hmac


def job_token(key: bytes, job_uid: str) -> str:
    return hmac.new(key, job_uid.encode(), hashlib.sha256).hexdigest()


def token_matches(key: bytes, job_uid: str, presented: str) -> bool:
    """Constant-time comparison of bytes: compare_digest refuses str with non-ASCII characters (TypeError), and a
    header may carry any (the report endpoint answered such a token with a 500)."""
    return hmac.compare_digest(job_token(key, job_uid).encode(), presented.encode("utf-8", "replace"))

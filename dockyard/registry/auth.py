"""Registry authentication: htpasswd (bcrypt) users, and bearer tokens for Docker's token flow.

Pure functions over bytes and headers; the server decides what each request needs. Tokens are
opaque to clients (Docker's token spec lets them be anything): ``base64url(json claims).base64url(
HMAC-SHA256(secret, claims))``, where claims are the user, the granted scopes and an expiry. The
registry is its own token service (realm ``<registry>/token``), so no keys have to be shared.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time

from dockyard.errdefs import InvalidArgument

TOKEN_TTL = 300


def load_htpasswd(path: str) -> dict[str, bytes]:
    """``user:$2y$...`` lines -> {user: hash}; only bcrypt, like the reference registry."""
    users = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f.read().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            user, sep, pw_hash = line.partition(b":")
            if not sep or not pw_hash.startswith((b"$2a$", b"$2b$", b"$2y$")):
                raise InvalidArgument(f"{path}:{n}: not a 'user:bcrypt-hash' line (make it with htpasswd -B)")
            users[user.decode()] = pw_hash
    return users


def check_password(users: dict[str, bytes], user: str, password: str) -> bool:
    import bcrypt  # only registries with --htpasswd need it

    pw_hash = users.get(user)
    if pw_hash is None:
        bcrypt.checkpw(b"x", b"$2b$05$" + b"." * 53)  # same cost for unknown users: no user probing
        return False
    return bcrypt.checkpw(password.encode(), b"$2b$" + pw_hash[4:])  # $2y$ is $2b$ under another name


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:pass)`` -> (user, pass), None when absent or malformed."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def parse_scope(scope: str) -> tuple[str, str, set[str]] | None:
    """``repository:name:pull,push`` -> ("repository", "name", {"pull", "push"})."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, set(a for a in actions.split(",") if a)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue_token(secret: bytes, user: str, access: list[dict], ttl: int = TOKEN_TTL) -> str:
    claims = json.dumps({"sub": user, "access": access, "exp": int(time.time()) + ttl}, separators=(",", ":")).encode()
    return _b64(claims) + "." + _b64(hmac.new(secret, claims, hashlib.sha256).digest())


def check_token(secret: bytes, token: str) -> dict | None:
    """The claims of a valid, unexpired token; None otherwise."""
    try:
        body, sig = token.split(".")
        claims = _unb64(body)
        if not hmac.compare_digest(_unb64(sig), hmac.new(secret, claims, hashlib.sha256).digest()):
            return None
        parsed = json.loads(claims)
        return parsed if parsed.get("exp", 0) > time.time() else None
    except (ValueError, binascii.Error):
        return None


def token_allows(claims: dict, kind: str, name: str, action: str) -> bool:
    return any(a.get("type") == kind and a.get("name") == name and action in a.get("actions", ())
               for a in claims.get("access") or ())

"""Password hashing (Argon2id) and the JWTs that carry a session."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from promptstack.core.clock import Clock
from promptstack.core.errors import Unauthorized
from promptstack.core.settings import Settings

TokenType = Literal["access", "refresh"]

_VERIFIED_TOKENS_KEPT = 10_000


class PasswordHasher:
    """Argon2id hashing off the event loop, with a decoy for accounts that do not exist.

    Verifying against the decoy when no account matches makes a login for an unknown
    name cost as much as one with a wrong password, so timing tells nothing.
    """

    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.password_hash_time_cost,
                    memory_cost=settings.password_hash_memory_cost,
                    parallelism=settings.password_hash_parallelism,
                ),
            )
        )
        self._decoy = self._hash.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Whether it matches, and a new hash when the stored one uses old parameters."""
        return await asyncio.to_thread(self._hash.verify_and_update, password, hashed)

    async def verify_decoy(self, password: str) -> None:
        await asyncio.to_thread(self._hash.verify, password, self._decoy)


def hash_token(token: str) -> str:
    """What is stored of a bearer secret: enough to recognise it, useless if leaked."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_version: int
    token_id: uuid.UUID
    # The session (refresh-token family) it was issued for; None in tokens issued
    # before access tokens carried it.
    family_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: uuid.UUID
    family_id: uuid.UUID
    token_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: uuid.UUID
    issued_at: datetime
    expires_at: datetime


class TokenCodec:
    """Issues and checks the service's JWTs; the algorithm is pinned, never read from a token."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._key = settings.secret_key.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.app_name
        self.access_lifetime = timedelta(minutes=settings.access_token_expire_minutes)
        self.refresh_lifetime = timedelta(days=settings.refresh_token_expire_days)
        self._clock = clock
        self._verified: OrderedDict[str, tuple[AccessClaims, float]] = OrderedDict()

    def issue_access(
        self, user_id: uuid.UUID, session_version: int, family_id: uuid.UUID
    ) -> IssuedToken:
        return self._issue(
            "access",
            user_id,
            self.access_lifetime,
            {"ver": session_version, "fam": str(family_id)},
        )

    def issue_refresh(self, user_id: uuid.UUID, family_id: uuid.UUID) -> IssuedToken:
        return self._issue("refresh", user_id, self.refresh_lifetime, {"fam": str(family_id)})

    def _issue(
        self, kind: TokenType, user_id: uuid.UUID, lifetime: timedelta, extra: dict[str, object]
    ) -> IssuedToken:
        now = self._clock.now().replace(microsecond=0)
        token_id = uuid.uuid4()
        claims = {
            "type": kind,
            "sub": str(user_id),
            "iat": now,
            "exp": now + lifetime,
            "jti": str(token_id),
            "iss": self._issuer,
            **extra,
        }
        token = jwt.encode(claims, self._key, algorithm=self._algorithm)
        return IssuedToken(token=token, token_id=token_id, issued_at=now, expires_at=now + lifetime)

    def read_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token.

        Every request presents one, and a client presents the same one many times, so
        tokens that verified are remembered (bounded, never past their expiry): checking
        a signature and parsing JSON again would give the same answer, slower. Only
        successes are kept; whether the session is still live is decided by the caller
        against the account, on every request.
        """
        known = self._verified.get(token)
        if known is not None:
            claims, expires = known
            if expires > self._clock.now().timestamp():
                return claims
            del self._verified[token]
            raise Unauthorized("The token has expired.")
        decoded = self._decode(token, "access")
        try:
            claims = AccessClaims(
                user_id=_uuid(decoded["sub"]),
                session_version=_int(decoded["ver"]),
                token_id=_uuid(decoded["jti"]),
                family_id=_uuid(decoded["fam"]) if "fam" in decoded else None,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("The token is malformed.") from exc
        self._verified[token] = (claims, float(decoded["exp"]))
        if len(self._verified) > _VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return claims

    def read_refresh(self, token: str) -> RefreshClaims:
        claims = self._decode(token, "refresh")
        try:
            return RefreshClaims(
                user_id=_uuid(claims["sub"]),
                family_id=_uuid(claims["fam"]),
                token_id=_uuid(claims["jti"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("The token is malformed.") from exc

    def _decode(self, token: str, expected: TokenType) -> dict[str, Any]:
        now = self._clock.now()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                options={
                    "require": ["exp", "iat", "sub", "jti", "type"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("The token is invalid.") from exc
        if claims.get("type") != expected:
            raise Unauthorized(f"This needs a token of type {expected!r}.")
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or expires <= now.timestamp():
            raise Unauthorized("The token has expired.")
        return claims


def _uuid(claim: object) -> uuid.UUID:
    """A UUID claim, in the string form the service writes; anything else is a TypeError."""
    if not isinstance(claim, str):
        raise TypeError("a UUID claim must be a string")
    return uuid.UUID(claim)


def _int(claim: object) -> int:
    """An integer claim, as the service writes it; not a float, text or a boolean."""
    if isinstance(claim, bool) or not isinstance(claim, int):
        raise TypeError("an integer claim must be an integer")
    return claim

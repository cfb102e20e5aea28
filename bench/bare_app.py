"""The baseline for the benchmark: FastAPI and PyJWT, nothing else.

It checks a bearer token the way the service does (same secret, pinned algorithm,
issuer, required claims, `type` and `exp`) and answers a small JSON body, with no
database, no middleware and no logging. The service's rate divided by this one's, measured
in the same run on the same CPU, is what `bench/run.py` reports.

Configured from the same environment variables as the service: `SECRET_KEY`,
`JWT_ALGORITHM` (default HS256) and `APP_NAME` (the issuer, default "Prompt Stack").
Served by `bench/run.py` as `uvicorn --app-dir bench --factory bare_app:create_app`.
"""

# No `from __future__ import annotations`: FastAPI must see the annotations of the
# endpoints defined inside create_app as objects, not as names to look up in the module.
import os
import time
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer

bearer = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)


def create_app() -> FastAPI:
    key = os.environ["SECRET_KEY"]
    algorithm = os.environ.get("JWT_ALGORITHM", "HS256")
    issuer = os.environ.get("APP_NAME", "Prompt Stack")

    async def claims(token: Annotated[str | None, Depends(bearer)]) -> dict[str, Any]:
        if not token or len(token) > 4096:
            raise HTTPException(401, "Send a bearer access token.")
        try:
            decoded: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=issuer,
                options={
                    "require": ["exp", "iat", "sub", "jti", "type"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise HTTPException(401, "The token is invalid.") from exc
        if decoded.get("type") != "access":
            raise HTTPException(401, "This needs an access token.")
        expires = decoded.get("exp")
        if not isinstance(expires, int | float) or expires <= time.time():
            raise HTTPException(401, "The token has expired.")
        return decoded

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(token: Annotated[dict[str, Any], Depends(claims)]) -> dict[str, Any]:
        return {"id": token["sub"], "session_version": token.get("ver"), "ok": True}

    return app

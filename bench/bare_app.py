"""The baseline for the benchmark: FastAPI, PyJWT and SQLAlchemy Core, nothing else.

It checks a bearer token the way the service does (same secret, pinned algorithm,
issuer, required claims, `type` and `exp`) and then does the least each scenario of
`bench/run.py` needs, with no middleware, no logging, no cache and no ORM:

- `GET /me` answers a small JSON body from the token alone;
- `GET /notifications` selects the caller's 20 newest notifications (the columns the
  service's NotificationOut shows, in its order) and a cursor when there are more;
- `PATCH /me` sets the caller's `full_name` in one `UPDATE ... RETURNING` transaction and
  answers the fields of the service's UserOut;
- `POST /orders` stores the body as it came, in one row of a table of its own
  (`bare_orders`, made on start) in one `INSERT` transaction, and answers 202 with the
  row: an endpoint that accepts work and leaves it for later, the least placing can be.

And for `bench/llm.py`, the LLM gateway's baselines, with no provider, quota or ledger:

- `POST /llm/generate` reads the JSON body and answers a fixed completion of the shape
  of the service's GenerateOut (`COMPLETION_TEXT`, the demo provider's answer to the
  benchmark's prompt, so both answers are the same size);
- `POST /llm/stream` reads the JSON body and streams the same answer as server-sent
  events, as the service frames them: one `delta` per word (as the demo provider
  splits it), then `usage` (the JSON answer without its text) and `done`.

The service's rate divided by this one's, measured in the same run on the same CPU, is
what `bench/run.py` reports.

Configured from the same environment variables as the service: `SECRET_KEY`,
`JWT_ALGORITHM` (default HS256), `APP_NAME` (the issuer, default "Prompt Stack"),
`DATABASE_URL`, `DATABASE_POOL_SIZE` and `DATABASE_MAX_OVERFLOW` (defaults 10 and 20, as
the service's). Served by `bench/run.py` as
`uvicorn --app-dir bench --factory bare_app:create_app`, and by `bench/llm.py` alike.
"""

# No `from __future__ import annotations`: FastAPI must see the annotations of the
# endpoints defined inside create_app as objects, not as names to look up in the module.
import base64
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Dialect, Row
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

bearer = OAuth2PasswordBearer(tokenUrl="/token", auto_error=False)
PAGE = 20  # the page the service answers `?limit=20` with


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite keeps no time zone: the service stores UTC and so reads UTC back."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


# Declared, not reflected: `Uuid` binds a UUID to PostgreSQL's uuid and to SQLite's
# CHAR(32) alike, which reflection would not give. Only the columns used here.
metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("email", String),
    Column("username", String),
    Column("full_name", String),
    Column("role", String),
    Column("tier", String),
    Column("is_active", Boolean),
    Column("is_verified", Boolean),
    Column("is_beta_tester", Boolean),
    Column("credits", Integer),
    Column("preferred_provider", String),
    Column("created_at", UTCDateTime),
    Column("updated_at", UTCDateTime),
)
notifications = Table(
    "notifications",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid),
    Column("sender_id", Uuid),
    Column("subject", String),
    Column("message", Text),
    Column("created_at", UTCDateTime),
    Column("read_at", UTCDateTime),
)
# The bare app's own: nothing in the service reads it, and the bench database goes after.
bare_orders = Table(
    "bare_orders",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("status", String(16), nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
# What NotificationOut and UserOut show, in their order. Their answers are keyed by these
# plain strings rather than the rows' own keys (SQLAlchemy's quoted_name, a str subclass
# that pydantic's serializer probes attribute by attribute).
NOTIFICATION_OUT = ("id", "subject", "message", "sender_id", "created_at", "read_at")
USER_OUT = (
    "id",
    "email",
    "username",
    "full_name",
    "role",
    "tier",
    "is_active",
    "is_verified",
    "is_beta_tester",
    "credits",
    "preferred_provider",
    "created_at",
)
# Newest first as the service pages them, one row more than a page: is there a next one?
INBOX = (
    select(*(notifications.c[name] for name in NOTIFICATION_OUT))
    .where(notifications.c.user_id == bindparam("sub"))
    .order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
    .limit(PAGE + 1)
)
PLACE = insert(bare_orders)
RENAME = (
    update(users)
    .where(users.c.id == bindparam("sub"))
    .values(full_name=bindparam("name"), updated_at=bindparam("now"))
    .returning(*(users.c[name] for name in USER_OUT))
)


# The LLM baselines' answer: what the demo provider answers bench/llm.py's prompt ("What
# is event sourcing?"), so that both apps send the same text; bench/llm.py checks it.
COMPLETION_TEXT = "Demo answer to: What is event sourcing?"
COMPLETION = {
    "text": COMPLETION_TEXT,
    "provider": "demo",
    "model": "demo",
    "finish_reason": "stop",
    "prompt_tokens": 5,
    "completion_tokens": 9,
    "tokens_used": 14,
    "usage_exact": True,
    "cost_micros": 0,
    "credits_charged": 0,
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(name: str, data: Any) -> bytes:
    """One server-sent event as the service frames it: its name, its data on one line."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


# The deltas, framed once: the words as the demo provider streams them.
DELTAS = tuple(
    sse_event("delta", {"text": piece}) for piece in re.findall(r"\s*\S+", COMPLETION_TEXT)
)
DONE = sse_event("done", {})


def completion_events() -> Iterator[bytes]:
    """The fixed answer as a stream: its deltas, then usage (without text) and done."""
    yield from DELTAS
    usage = {"id": str(uuid.uuid4())} | {k: v for k, v in COMPLETION.items() if k != "text"}
    yield sse_event("usage", usage)
    yield DONE


def database_engine(url: str) -> AsyncEngine:
    """An engine set up as the service's, so that the database work costs the same.

    The service sizes only PostgreSQL's pool from its settings and leaves SQLite's at
    SQLAlchemy's default; on SQLite it also sets the pragmas that decide what a commit
    costs (WAL, synchronous=NORMAL) and a busy timeout for writers waiting their turn.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        pool_size=int(os.environ.get("DATABASE_POOL_SIZE", "10")),
        max_overflow=int(os.environ.get("DATABASE_MAX_OVERFLOW", "20")),
    )


def cursor_after(row: Row[Any]) -> str:
    """The service's cursor format: the last row's (created_at, id), opaque to clients."""
    raw = json.dumps([row.created_at.isoformat(), str(row.id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def create_app() -> FastAPI:
    key = os.environ["SECRET_KEY"]
    algorithm = os.environ.get("JWT_ALGORITHM", "HS256")
    issuer = os.environ.get("APP_NAME", "Prompt Stack")
    engine = database_engine(os.environ["DATABASE_URL"])

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

    async def user_id(token: Annotated[dict[str, Any], Depends(claims)]) -> uuid.UUID:
        try:
            return uuid.UUID(str(token["sub"]))
        except ValueError as exc:
            raise HTTPException(401, "The token is invalid.") from exc

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(bare_orders.create, checkfirst=True)
        yield
        await engine.dispose()

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me(token: Annotated[dict[str, Any], Depends(claims)]) -> dict[str, Any]:
        return {"id": token["sub"], "session_version": token.get("ver"), "ok": True}

    @app.get("/notifications")
    async def inbox(sub: Annotated[uuid.UUID, Depends(user_id)]) -> dict[str, Any]:
        async with engine.connect() as connection:
            rows = (await connection.execute(INBOX, {"sub": sub})).all()
        return {
            "items": [dict(zip(NOTIFICATION_OUT, row, strict=True)) for row in rows[:PAGE]],
            "next_cursor": cursor_after(rows[PAGE - 1]) if len(rows) > PAGE else None,
        }

    @app.patch("/me")
    async def rename(
        sub: Annotated[uuid.UUID, Depends(user_id)],
        full_name: Annotated[str, Body(embed=True, min_length=1, max_length=100)],
    ) -> dict[str, Any]:
        async with engine.begin() as connection:
            row = (
                await connection.execute(
                    RENAME, {"sub": sub, "name": full_name, "now": datetime.now(UTC)}
                )
            ).one_or_none()
        if row is None:
            raise HTTPException(404, "No such user.")
        return dict(zip(USER_OUT, row, strict=True))

    @app.post("/orders", status_code=202)
    async def place(
        sub: Annotated[uuid.UUID, Depends(user_id)], body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        row = {
            "id": uuid.uuid4(),
            "user_id": sub,
            "status": "pending",
            "body": body,
            "created_at": datetime.now(UTC),
        }
        async with engine.begin() as connection:
            await connection.execute(PLACE, row)
        return row

    @app.post("/llm/generate")
    async def generate(
        _token: Annotated[dict[str, Any], Depends(claims)],
        _body: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        return {"id": uuid.uuid4()} | COMPLETION

    @app.post("/llm/stream")
    async def stream(
        _token: Annotated[dict[str, Any], Depends(claims)],
        _body: Annotated[dict[str, Any], Body()],
    ) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            for framed in completion_events():
                yield framed

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    return app

"""What routes ask for besides their input: services, and the client's address.

Each domain names the services its routes take (`AccountServiceDep = Annotated[...,
Depends(provider(AccountService))]`) in its own `dependencies.py`; `provider` looks them
up by type in the registry the app was built with (`app.state.services`, filled from the
container), so this kit knows no domain. Providers are `async def` although they do no
I/O: FastAPI runs a plain `def` dependency in a worker thread, which on every request
costs more than the lookup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import Depends, Request

from promptstack.core.net import client_address
from promptstack.core.settings import Settings

T = TypeVar("T")


def provider(kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency that hands a route the app's one service of type `kind`."""

    async def provide(request: Request) -> T:
        return cast(T, request.app.state.services[kind])

    provide.__name__ = f"provide_{kind.__name__}"
    return provide


SettingsDep = Annotated[Settings, Depends(provider(Settings))]


async def get_client_address(request: Request, settings: SettingsDep) -> str:
    peer = request.client.host if request.client else None
    return client_address(
        peer, request.headers.get("x-forwarded-for"), settings.trusted_proxy_networks
    )


ClientAddress = Annotated[str, Depends(get_client_address)]

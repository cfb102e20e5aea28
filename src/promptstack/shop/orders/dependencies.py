"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.http.dependencies import provider
from promptstack.shop.orders.service import OrderService

OrderServiceDep = Annotated[OrderService, Depends(provider(OrderService))]

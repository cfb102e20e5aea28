"""`?limit=` and `?cursor=` for every list."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from promptstack.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Cursor, PageRequest


async def get_page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> PageRequest:
    return PageRequest(limit=limit, after=Cursor.decode(cursor) if cursor else None)


PageDep = Annotated[PageRequest, Depends(get_page_request)]

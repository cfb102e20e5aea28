"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.exports.service import AccountExports
from promptstack.http.dependencies import provider

AccountExportsDep = Annotated[AccountExports, Depends(provider(AccountExports))]

"""The services this domain's routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from promptstack.ai.documents.service import Documents
from promptstack.http.dependencies import provider

DocumentsDep = Annotated[Documents, Depends(provider(Documents))]

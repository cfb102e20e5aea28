"""Domain entities and their tables. Importing this package registers every table."""

from promptstack.models.audit import AuditEntry
from promptstack.models.auth import ActionToken, LoginFailure, RefreshToken, TokenPurpose
from promptstack.models.user import ROLE_RANK, Role, Tier, User, UserSnapshot

__all__ = [
    "ROLE_RANK",
    "ActionToken",
    "AuditEntry",
    "LoginFailure",
    "RefreshToken",
    "Role",
    "Tier",
    "TokenPurpose",
    "User",
    "UserSnapshot",
]

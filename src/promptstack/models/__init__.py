"""Domain entities and their tables. Importing this package registers every table."""

from promptstack.models.audit import AuditEntry
from promptstack.models.auth import ActionToken, LoginFailure, RefreshToken, TokenPurpose
from promptstack.models.job import Job, JobState
from promptstack.models.messaging import InboxEntry, OutboxMessage
from promptstack.models.notification import Notification
from promptstack.models.user import ROLE_RANK, Role, Tier, User, UserSnapshot

__all__ = [
    "ROLE_RANK",
    "ActionToken",
    "AuditEntry",
    "InboxEntry",
    "Job",
    "JobState",
    "LoginFailure",
    "Notification",
    "OutboxMessage",
    "RefreshToken",
    "Role",
    "Tier",
    "TokenPurpose",
    "User",
    "UserSnapshot",
]

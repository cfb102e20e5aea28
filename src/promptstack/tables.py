"""Domain entities and their tables. Importing this package registers every table."""

from promptstack.accounts.api_key_models import ApiKey
from promptstack.accounts.credit_models import CreditEntry, CreditReason
from promptstack.accounts.models import ROLE_RANK, Role, Tier, User, UserSnapshot
from promptstack.accounts.session_models import (
    ActionToken,
    LoginFailure,
    RefreshToken,
    TokenPurpose,
)
from promptstack.ai.documents.models import (
    Document,
    DocumentChunk,
    DocumentKind,
    DocumentStatus,
    DocumentVectorSet,
)
from promptstack.ai.llm.models import LlmCall, Outcome
from promptstack.audit.models import AuditEntry
from promptstack.events.models import InboxEntry, OutboxMessage, Snapshot, StoredEvent
from promptstack.jobs.models import Job, JobState
from promptstack.notifications.models import Notification
from promptstack.shop.catalog.models import Product, ProductKind
from promptstack.shop.inventory.models import Reservation, ReservationStatus
from promptstack.shop.orders.models import OrderRequest
from promptstack.shop.payments.models import Payment, PaymentStatus, SandboxOperation

__all__ = [
    "ROLE_RANK",
    "ActionToken",
    "ApiKey",
    "AuditEntry",
    "CreditEntry",
    "CreditReason",
    "Document",
    "DocumentChunk",
    "DocumentKind",
    "DocumentStatus",
    "DocumentVectorSet",
    "InboxEntry",
    "Job",
    "JobState",
    "LlmCall",
    "LoginFailure",
    "Notification",
    "OrderRequest",
    "OutboxMessage",
    "Outcome",
    "Payment",
    "PaymentStatus",
    "Product",
    "ProductKind",
    "RefreshToken",
    "Reservation",
    "ReservationStatus",
    "Role",
    "SandboxOperation",
    "Snapshot",
    "StoredEvent",
    "Tier",
    "TokenPurpose",
    "User",
    "UserSnapshot",
]

"""Feature flags: which features are on, decided per caller.

Three flags are built in; FEATURE_FLAGS adds more, or replaces a built-in of the same
name. Built-in and configured flags are the same kind of `FlagRule` (core/settings.py),
so one evaluator answers for all of them and operations can redefine any of them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from promptstack.accounts.models import UserSnapshot
from promptstack.core.settings import FlagRule, Settings

BUILT_IN_FLAGS: Mapping[str, FlagRule] = MappingProxyType(
    {
        "new_dashboard": FlagRule(environments=("development",), beta_testers=True),
        "ai_chat": FlagRule(authenticated=True),
        "advanced_analytics": FlagRule(tiers=("premium",)),
    }
)


def rollout_position(name: str, user_id: uuid.UUID) -> float:
    """Where a user stands, from 0 up to (not including) 100, in a flag's percentage rollout.

    A hash of the flag's name and the user's id, rather than chance or Python's `hash()`
    (salted per process): a user gets the same answer on every request and from every
    worker, and each flag draws its own share of users, so the same few do not get every
    new feature first.
    """
    digest = hashlib.sha256(f"{name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * 100 / 2**64


class FeatureFlags:
    """The flags in force, fixed at start: changing FEATURE_FLAGS needs a restart, while
    what a flag reads from an account (role, tier, beta tester) counts at once."""

    def __init__(self, settings: Settings) -> None:
        self.environment = settings.environment
        rules = {**BUILT_IN_FLAGS, **settings.feature_flags}
        self.rules: Mapping[str, FlagRule] = MappingProxyType(dict(sorted(rules.items())))

    def evaluate(self, user: UserSnapshot | None) -> dict[str, bool]:
        """Every flag, by name, for this caller; None is an anonymous caller."""
        return {
            name: _is_on(name, rule, user, self.environment) for name, rule in self.rules.items()
        }

    def is_enabled(self, name: str, user: UserSnapshot | None) -> bool:
        """One flag for this caller. A flag that is not defined is off, so code can ship
        behind a flag that operations switch on later through FEATURE_FLAGS."""
        rule = self.rules.get(name)
        return rule is not None and _is_on(name, rule, user, self.environment)


def _is_on(name: str, rule: FlagRule, user: UserSnapshot | None, environment: str) -> bool:
    """`enabled` alone decides when given; otherwise any audience the caller is in."""
    if rule.enabled is not None:
        return rule.enabled
    if environment in rule.environments or rule.percentage >= 100:
        return True
    if user is None:
        return False
    return (
        rule.authenticated
        or (rule.beta_testers and user.is_beta_tester)
        or user.role.value in rule.roles
        or user.tier.value in rule.tiers
        or user.id in rule.users
        or rollout_position(name, user.id) < rule.percentage
    )

"""Feature flag rules: the built-ins for every kind of caller, rollouts, configuration."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from promptstack.accounts.models import Role, Tier, UserSnapshot
from promptstack.core.settings import RoleName, Settings, TierName
from promptstack.features.service import BUILT_IN_FLAGS, FeatureFlags, rollout_position

SYNTHETIC_IDS = [uuid.UUID(int=n) for n in range(2000)]


pytestmark = pytest.mark.usefixtures("no_dotenv")


def flags(environment: str = "test", **rules: dict[str, Any]) -> FeatureFlags:
    settings = Settings(
        _env_file=None,
        environment=environment,
        secret_key="a production-grade secret key of 48 characters..",
        feature_flags=rules,
    )
    return FeatureFlags(settings)


def account(
    role: Role = Role.USER,
    tier: Tier = Tier.FREE,
    *,
    beta: bool = False,
    user_id: uuid.UUID | None = None,
) -> UserSnapshot:
    """A caller as authentication hands it to the flags."""
    user_id = user_id or uuid.uuid4()
    now = datetime.now(UTC)
    return UserSnapshot(
        id=user_id,
        email=f"{user_id.hex}@example.com",
        username=f"u{user_id.hex[:31]}",
        full_name=None,
        role=role,
        tier=tier,
        is_active=True,
        is_verified=True,
        is_beta_tester=beta,
        credits=0,
        preferred_provider=None,
        session_version=0,
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )


# --- the built-in flags --------------------------------------------------------------------

CALLERS: dict[str, Callable[[], UserSnapshot | None]] = {
    "anonymous": lambda: None,
    "user": account,
    "premium": lambda: account(tier=Tier.PREMIUM),
    "beta tester": lambda: account(beta=True),
    "admin": lambda: account(Role.ADMIN),
}
OUTSIDE_DEVELOPMENT = {
    "anonymous": set(),
    "user": {"ai_chat"},
    "premium": {"ai_chat", "advanced_analytics"},
    "beta tester": {"ai_chat", "new_dashboard"},
    "admin": {"ai_chat"},
}


@pytest.mark.parametrize("environment", ["test", "staging", "production"])
@pytest.mark.parametrize("caller", list(CALLERS))
def test_built_in_flags_outside_development(environment: str, caller: str) -> None:
    evaluated = flags(environment).evaluate(CALLERS[caller]())
    assert set(evaluated) == set(BUILT_IN_FLAGS)
    assert {name for name, on in evaluated.items() if on} == OUTSIDE_DEVELOPMENT[caller]


@pytest.mark.parametrize("caller", list(CALLERS))
def test_the_new_dashboard_is_on_for_everyone_in_development(caller: str) -> None:
    evaluated = flags("development").evaluate(CALLERS[caller]())
    expected = OUTSIDE_DEVELOPMENT[caller] | {"new_dashboard"}
    assert {name for name, on in evaluated.items() if on} == expected


def test_is_enabled_agrees_with_evaluate() -> None:
    service = flags(extra={"roles": ["admin"]})
    for make in CALLERS.values():
        caller = make()
        assert {n: service.is_enabled(n, caller) for n in service.rules} == service.evaluate(caller)


def test_a_flag_nobody_defined_is_off() -> None:
    assert flags().is_enabled("not_defined_yet", account()) is False


# --- percentage rollouts -------------------------------------------------------------------


def test_a_rollout_position_is_the_same_on_every_machine_and_in_every_process() -> None:
    # A sha256 of name and id, not Python's per-process salted hash(); changing this
    # would move users in or out of every running rollout.
    assert rollout_position("new_dashboard", uuid.UUID(int=0)) == pytest.approx(72.346132071)


def test_a_user_keeps_its_answer_across_evaluations() -> None:
    # Two services stand for two requests, or two workers: each sees a fresh User object.
    first, second = flags(beta={"percentage": 30}), flags(beta={"percentage": 30})
    for user_id in SYNTHETIC_IDS:
        answer = first.is_enabled("beta", account(user_id=user_id))
        assert second.is_enabled("beta", account(user_id=user_id)) is answer


@pytest.mark.parametrize("percentage", [10, 25, 50, 90])
def test_a_rollout_reaches_roughly_its_share_of_users(percentage: int) -> None:
    service = flags(rollout={"percentage": percentage})
    reached = sum(service.is_enabled("rollout", account(user_id=u)) for u in SYNTHETIC_IDS)
    share = percentage / 100
    expected = len(SYNTHETIC_IDS) * share
    deviation = math.sqrt(len(SYNTHETIC_IDS) * share * (1 - share))  # binomial: 13 to 22 here
    assert abs(reached - expected) <= 5 * deviation


def test_a_growing_rollout_keeps_the_users_it_already_had() -> None:
    services = {p: flags(r={"percentage": p}) for p in (5, 20, 60)}
    reached = {
        p: {u for u in SYNTHETIC_IDS if service.is_enabled("r", account(user_id=u))}
        for p, service in services.items()
    }
    assert reached[5] <= reached[20] <= reached[60]


def test_each_flag_draws_its_own_users() -> None:
    service = flags(first={"percentage": 50}, second={"percentage": 50})
    both = sum(
        service.is_enabled("first", user) and service.is_enabled("second", user)
        for user in (account(user_id=u) for u in SYNTHETIC_IDS)
    )
    assert 350 <= both <= 650  # about a quarter if independent; half if they were the same


def test_anonymous_callers_are_in_a_rollout_only_at_100_percent() -> None:
    service = flags(most={"percentage": 99.9}, every={"percentage": 100})
    assert service.is_enabled("most", None) is False
    assert service.is_enabled("every", None) is True
    assert all(service.is_enabled("every", account(user_id=u)) for u in SYNTHETIC_IDS)


def test_a_rollout_at_0_percent_reaches_nobody() -> None:
    service = flags(none={"percentage": 0})
    assert not any(service.is_enabled("none", account(user_id=u)) for u in SYNTHETIC_IDS)


# --- configured rules ----------------------------------------------------------------------


def test_configuration_replaces_a_built_in_flag() -> None:
    service = flags(ai_chat={"tiers": ["premium"]}, advanced_analytics={"enabled": True})
    assert service.evaluate(account()) == {
        "advanced_analytics": True,
        "ai_chat": False,
        "new_dashboard": False,
    }
    assert service.evaluate(None)["advanced_analytics"] is True
    assert service.is_enabled("ai_chat", account(tier=Tier.PREMIUM))


def test_configuration_adds_flags_next_to_the_built_ins() -> None:
    service = flags(prompt_library={"authenticated": True})
    assert list(service.rules) == sorted([*BUILT_IN_FLAGS, "prompt_library"])


def test_enabled_false_switches_a_flag_off_whatever_else_the_rule_says() -> None:
    admin = account(Role.ADMIN, Tier.PREMIUM, beta=True)
    rule = {
        "enabled": False,
        "environments": ["test"],
        "roles": ["admin"],
        "tiers": ["premium"],
        "beta_testers": True,
        "authenticated": True,
        "percentage": 100,
        "users": [str(admin.id)],
    }
    assert flags(off=rule).is_enabled("off", admin) is False


def test_a_rule_is_on_for_anyone_in_any_of_its_audiences() -> None:
    chosen = account()
    service = flags(
        mixed={"roles": ["super_admin"], "tiers": ["premium"], "users": [str(chosen.id)]}
    )
    assert service.is_enabled("mixed", account(Role.SUPER_ADMIN))
    assert service.is_enabled("mixed", account(tier=Tier.PREMIUM))
    assert service.is_enabled("mixed", chosen)
    assert not service.is_enabled("mixed", account(Role.ADMIN))
    assert not service.is_enabled("mixed", None)


@pytest.mark.parametrize(
    ("rule", "on_for"),
    [
        ({}, set()),
        ({"beta_testers": False, "authenticated": False}, set()),
        ({"enabled": True}, {"anonymous", "user", "premium", "beta tester", "admin"}),
        ({"environments": ["test"]}, {"anonymous", "user", "premium", "beta tester", "admin"}),
        ({"environments": ["production", "staging"]}, set()),
        ({"authenticated": True}, {"user", "premium", "beta tester", "admin"}),
        ({"beta_testers": True}, {"beta tester"}),
        ({"roles": ["admin", "super_admin"]}, {"admin"}),
        ({"tiers": ["free"]}, {"user", "beta tester", "admin"}),
    ],
)
def test_each_kind_of_audience(rule: dict[str, Any], on_for: set[str]) -> None:
    service = flags(flag=rule)
    assert {name for name, make in CALLERS.items() if service.is_enabled("flag", make())} == on_for


# --- FEATURE_FLAGS in the environment ------------------------------------------------------


def test_feature_flags_are_read_as_json_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user_id = uuid.uuid4()
    value = {"ai_chat": {"enabled": False}, "early_access": {"users": [str(user_id)]}}
    monkeypatch.setenv("FEATURE_FLAGS", json.dumps(value))
    service = FeatureFlags(Settings(_env_file=None))
    assert service.evaluate(account(user_id=user_id)) == {
        "advanced_analytics": False,
        "ai_chat": False,
        "early_access": True,
        "new_dashboard": True,  # the environment is development
    }


def test_empty_feature_flags_mean_only_the_built_ins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_FLAGS", "")
    assert list(FeatureFlags(Settings(_env_file=None)).rules) == sorted(BUILT_IN_FLAGS)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="not-json"),
        pytest.param('["ai_chat"]', "valid dictionary", id="not-an-object"),
        pytest.param('{"ai_chat": true}', "valid dictionary", id="rule-not-an-object"),
        pytest.param('{"NewThing": {}}', "snake_case", id="capitals"),
        pytest.param('{"new-thing": {}}', "snake_case", id="dash"),
        pytest.param('{"new__thing": {}}', "snake_case", id="double-underscore"),
        pytest.param('{"_new": {}}', "snake_case", id="leading-underscore"),
        pytest.param('{"2fa": {}}', "snake_case", id="leading-digit"),
        pytest.param('{"": {}}', "snake_case", id="empty"),
        pytest.param(json.dumps({"x" * 65: {}}), "snake_case", id="too-long"),
        pytest.param('{"f": {"percentage": 101}}', "less than or equal to 100", id="over-100"),
        pytest.param('{"f": {"percentage": -1}}', "greater than or equal to 0", id="negative"),
        pytest.param('{"f": {"roles": ["root"]}}', "'super_admin'", id="unknown-role"),
        pytest.param('{"f": {"tiers": ["gold"]}}', "'premium'", id="unknown-tier"),
        pytest.param('{"f": {"environments": ["prod"]}}', "'production'", id="unknown-env"),
        pytest.param('{"f": {"users": ["bob"]}}', "UUID", id="not-a-user-id"),
        pytest.param('{"f": {"percent": 10}}', "Extra inputs", id="misspelt-field"),
        pytest.param('{"f": {"enabled": "maybe"}}', "valid boolean", id="not-a-boolean"),
    ],
)
def test_a_bad_feature_flags_value_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("FEATURE_FLAGS", value)
    with pytest.raises(ValidationError, match=message) as caught:
        Settings(_env_file=None)
    assert {error["loc"][0] for error in caught.value.errors()} == {"feature_flags"}


def test_rule_role_and_tier_names_are_the_models_values() -> None:
    assert set(get_args(RoleName)) == {role.value for role in Role}
    assert set(get_args(TierName)) == {tier.value for tier in Tier}

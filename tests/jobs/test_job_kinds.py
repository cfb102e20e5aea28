"""Job kinds are registered by explicit calls, once each, and a JOB_MODULES entry must
say how it registers its own."""

from __future__ import annotations

import pytest

from promptstack.jobs.registry import (
    JobContext,
    JobKinds,
    JobResult,
    UnknownJobKind,
    register_job_modules,
)


async def nothing(job: JobContext) -> JobResult:
    return {}


def test_a_kind_is_found_once_registered() -> None:
    kinds = JobKinds()
    kinds.add("report.daily", nothing)
    assert kinds.get("report.daily").run is nothing
    assert "report.daily" in kinds
    with pytest.raises(UnknownJobKind, match="JOB_MODULES"):
        kinds.get("report.weekly")


def test_a_kind_cannot_be_registered_twice() -> None:
    kinds = JobKinds()
    kinds.add("report.daily", nothing)
    with pytest.raises(ValueError, match="defined twice"):
        kinds.add("report.daily", nothing)


@pytest.mark.parametrize("name", ["Report", "report..daily", "1report", "r" * 65, ""])
def test_kind_names_are_lowercase_dotted_and_short(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase dotted"):
        JobKinds().add(name, nothing)


def test_job_modules_register_their_kinds() -> None:
    kinds = JobKinds()
    register_job_modules(kinds, ["tests.fixtures.jobs_for_tests"])
    assert {"test.gated", "test.flaky", "test.broken"} <= kinds.names


def test_a_job_module_without_register_is_refused() -> None:
    with pytest.raises(ValueError, match="register"):
        register_job_modules(JobKinds(), ["tests.fixtures.support"])

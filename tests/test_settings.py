"""Settings refused at startup rather than failing every request later."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dispatch.config import Settings


@pytest.mark.parametrize("targets", ["nan,180,300", "60,inf,300", "60,180,-inf", "0,180,300"])
def test_chain_targets_must_be_positive_finite_seconds(
    targets: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", targets)
    with pytest.raises(ValidationError, match="positive, finite seconds"):
        Settings()


@pytest.mark.parametrize("targets", ["300,180,60", "60,300,180"])
def test_chain_targets_must_not_decrease_from_tier_to_tier(
    targets: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", targets)
    with pytest.raises(ValidationError, match="must not decrease"):
        Settings()


def test_equal_chain_targets_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", "3600,3600,3600")
    assert Settings().chain_targets == (3600.0, 3600.0, 3600.0)


def test_chain_targets_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", "1.5,2.5,30")
    assert Settings().chain_targets == (1.5, 2.5, 30.0)

"""Settings refused at startup rather than failing every request later."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dispatch.config import NOTIFIER_URLS, OPTIONAL_SETTINGS, YEAR_S, Settings, setting_errors
from dispatch.notifiers.channels import (
    HttpSmsGateway,
    SmsChannel,
    WebhookChannel,
    configured_channels,
)


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


NUMBERS = sorted(name for name, f in Settings.model_fields.items() if f.annotation is float)


def test_the_numbers_are_the_ones_expected() -> None:
    assert {"timer_poll_s", "message_retention_days", "escalation_ring_m"} <= set(NUMBERS)


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_every_number_must_be_finite(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DISPATCH_TIMER_POLL_S=inf passed gt=0, and the deadline timer died at start."""
    monkeypatch.setenv(f"DISPATCH_{name.upper()}", value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    [error] = refused.value.errors()
    assert error["loc"] == (name,)
    assert error["msg"] == "Input should be a finite number"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timer_poll_s", "1e12"),
        ("escalation_after_s", str(YEAR_S + 1)),
        ("token_ttl_s", "99999999999"),
        ("principal_cache_s", "1e300"),
        ("message_retention_days", "1e6"),
    ],
)
def test_a_duration_is_at_most_a_year_or_so(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time built from it (now + it, now - it) must stay within the calendar."""
    monkeypatch.setenv(f"DISPATCH_{name.upper()}", value)
    with pytest.raises(ValidationError, match="less than or equal to"):
        Settings()


def test_a_year_is_still_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_TIMER_POLL_S", str(YEAR_S))
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", f"60,180,{YEAR_S}")
    monkeypatch.setenv("DISPATCH_MESSAGE_RETENTION_DAYS", "3650")
    assert Settings().timer_poll_s == YEAR_S


def test_a_chain_target_is_at_most_a_year(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_CHAIN_TARGETS", "60,180,1e9")
    with pytest.raises(ValidationError, match="at most a year"):
        Settings()


def test_the_last_notifier_retry_waits_at_most_a_year(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_NOTIFY_MAX_ATTEMPTS", "20")
    monkeypatch.setenv("DISPATCH_NOTIFY_BACKOFF_S", "120")
    assert Settings().notify_backoff_s == 120  # the 19th retry waits 120 * 2**18 s: 364 days
    monkeypatch.setenv("DISPATCH_NOTIFY_BACKOFF_S", "121")
    with pytest.raises(ValidationError, match="the last wait would be over a year"):
        Settings()


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), ("Warning", "WARNING")])
def test_a_log_level_is_taken_in_any_case(
    given: str, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_LOG_LEVEL", given)
    assert Settings().log_level == level


def test_a_log_format_is_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_LOG_FORMAT", "TEXT")
    assert Settings().log_format == "text"


# ---------------------------------------------------------------- optional settings left empty


@pytest.mark.parametrize("name", OPTIONAL_SETTINGS)
@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_an_empty_optional_setting_is_unset(
    name: str, blank: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docker-compose.yml passes each of them as ${NAME:-}: "" when the operator set nothing."""
    monkeypatch.setenv(f"DISPATCH_{name.upper()}", blank)
    assert getattr(Settings(), name) is None


@pytest.mark.parametrize("secret", [None, "", "  "])
def test_a_webhook_is_refused_without_a_secret_to_sign_with(
    secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_WEBHOOK_URL", "http://receiver/hook")
    if secret is not None:
        monkeypatch.setenv("DISPATCH_WEBHOOK_SECRET", secret)
    with pytest.raises(ValidationError) as refused:
        Settings()
    [error] = refused.value.errors()
    assert error["loc"] == ("webhook_secret",)
    assert "required with DISPATCH_WEBHOOK_URL" in error["msg"]


@pytest.mark.parametrize("name", NOTIFIER_URLS)
@pytest.mark.parametrize(
    "url",
    [
        "qyapi.weixin.qq.com/cgi-bin/webhook/send?key=robot-key",
        "ftp://gateway/send?key=robot-key",
        "https:///cgi-bin/webhook/send?key=robot-key",
        "http://[::1/send?key=robot-key",
    ],
)
def test_a_notifier_url_that_cannot_be_requested_stops_the_start(
    name: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken, it failed every notification ("UnsupportedProtocol"), found only when a leader
    did not answer a real alert. The refusal names the variable, not the URL: it holds a key."""
    monkeypatch.setenv(f"DISPATCH_{name.upper()}", url)
    monkeypatch.setenv("DISPATCH_WEBHOOK_SECRET", "webhook-secret")
    with pytest.raises(ValidationError) as refused:
        Settings()
    [error] = refused.value.errors()
    assert error["loc"] == (name,)
    [line] = setting_errors(refused.value)
    assert line == f"error: DISPATCH_{name.upper()}: must be an http:// or https:// URL with a host"


@pytest.mark.parametrize(
    "url", ["https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k", "http://127.0.0.1:9/hook"]
)
def test_a_notifier_url_with_its_scheme_and_host_is_taken(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_WECOM_ROBOT_URL", url)
    assert Settings().wecom_robot_url == url


def test_a_webhook_secret_is_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_WEBHOOK_URL", "http://receiver/hook")
    monkeypatch.setenv("DISPATCH_WEBHOOK_SECRET", " spaced secret ")
    [channel] = configured_channels(Settings())
    assert isinstance(channel, WebhookChannel)
    assert channel.secret == " spaced secret "


@pytest.mark.parametrize(
    ("username", "password", "says"),
    [
        ("town", "", "required with DISPATCH_SMS_GATEWAY_USERNAME"),
        ("town", None, "required with DISPATCH_SMS_GATEWAY_USERNAME"),
        ("", "gateway-password", "set without DISPATCH_SMS_GATEWAY_USERNAME"),
    ],
)
def test_the_sms_gateway_takes_both_credentials_or_neither(
    username: str, password: str | None, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_URL", "http://gateway/send")
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_USERNAME", username)
    if password is not None:
        monkeypatch.setenv("DISPATCH_SMS_GATEWAY_PASSWORD", password)
    with pytest.raises(ValidationError) as refused:
        Settings()
    [error] = refused.value.errors()
    assert error["loc"] == ("sms_gateway_password",)
    assert says in error["msg"]


def test_an_sms_gateway_without_credentials_sends_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_URL", "http://gateway/send")
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_USERNAME", "")
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_PASSWORD", "")
    [channel] = configured_channels(Settings())
    assert isinstance(channel, SmsChannel)
    assert channel.gateway == HttpSmsGateway("http://gateway/send", None, None)


def test_credentials_of_a_channel_that_is_off_are_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DISPATCH_SMS_GATEWAY_USERNAME", "town")
    monkeypatch.setenv("DISPATCH_WEBHOOK_SECRET", "")
    assert configured_channels(Settings()) == []

"""docs/deploy.md and docs/grafana-dashboard.json cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dispatch.config import Settings
from tests.support import World

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text()


def shown(value: object) -> str:
    """A default as the reference shows it."""
    if value is None or value == ():
        return "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, tuple):
        return ",".join(shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def test_the_settings_reference_lists_every_variable_with_its_default() -> None:
    documented = dict(re.findall(r"^\| `(DISPATCH_\w+)` \| `([^`]*)` \|", DEPLOY, re.M))
    expected = {
        f"DISPATCH_{name.upper()}": shown(field.default)
        for name, field in Settings.model_fields.items()
    }
    assert documented == expected


async def test_every_metric_is_documented_and_the_dashboard_uses_only_real_ones(
    world: World,
) -> None:
    exposed = {
        family.name
        for family in text_string_to_metric_families((await world.http.get("/metrics")).text)
    }
    documented = set(re.findall(r"^\| `(dispatch_\w+)` \|", DEPLOY, re.M))
    counters = {f"{name}_total" for name in exposed}
    # Families are named without _total; the documentation uses the names Prometheus stores.
    assert {d.removesuffix("_total") for d in documented} >= exposed - {
        "dispatch_fanout_connected",
        "dispatch_fanout_errors",
    }
    assert documented <= exposed | counters
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"\bdispatch_\w+", expr)
    }
    every = exposed | {"dispatch_fanout_connected", "dispatch_fanout_errors"}
    assert used <= every, used - every
    assert {
        "dispatch_time_to_arrival_seconds",
        "dispatch_chain_breaches",
        "dispatch_report_to_delivery_seconds",
        "dispatch_websocket_connections",
    } <= used

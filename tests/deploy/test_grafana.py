"""deploy/grafana/relay.json parses as a dashboard and queries only metrics relay really exports:
every metric name in its PromQL is a family of a live app's GET /metrics (parsed strictly)."""

from __future__ import annotations

import json
import re
import secrets

from tests.deploy.helpers import DEPLOY
from tests.ops.promtext import parse

DASHBOARD = DEPLOY / "grafana" / "relay.json"
TOKEN = "scrape-" + secrets.token_hex(16)
SUFFIXES = ("_bucket", "_sum", "_count")
TARGET_LABELS = {"instance", "job", "le"}  # added by Prometheus (le: histogram buckets)


def _exprs(doc: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:relay|process)_[a-z0-9_]+)\b", expr))


def test_dashboard_is_well_formed_and_covers_the_operators_questions() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    cells = set()
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps another panel"
                cells.add((x, y))
    used = set().union(*(_metric_names(e) for _t, e in _exprs(doc)))
    for needed in ("relay_live_calls", "relay_call_setup_seconds_bucket", "relay_uplink_latency_seconds_bucket",
                   "relay_downlink_latency_seconds_bucket", "relay_rtp_in_lost_packets_total",
                   "relay_downlink_frames_dropped_total", "process_cpu_seconds_total",
                   "relay_upstream_connect_failures_total", "relay_auth_failures_total"):
        assert needed in used, needed
    for _title, expr in _exprs(doc):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        for m in re.finditer(r"\b(?:relay|process)_[a-z0-9_]+\{([^}]*)\}", expr):
            assert m.group(1) == 'job=~"$job", instance=~"$instance"', expr  # every query follows the variables


async def test_every_queried_metric_is_exported_by_relay(make_app) -> None:  # noqa: ANN001
    client = await make_app(metrics_token=TOKEN)
    # one refused token first, so relay_auth_failures_total carries a sample with its labels
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    families = parse(await resp.text())
    doc = json.loads(DASHBOARD.read_text())
    for title, expr in _exprs(doc):
        for name in _metric_names(expr):
            family = name
            if name not in families and name.endswith(SUFFIXES):
                family = name.rsplit("_", 1)[0]
                assert families.get(family) is not None and families[family].kind == "histogram", (title, name)
            assert family in families, f"{title}: {name} is not exported by relay"
        # labels the query groups by exist on the family's samples (when the family has samples)
        for m in re.finditer(r"by \(([^)]*)\) \((?:rate\()?((?:relay|process)_[a-z0-9_]+)", expr):
            labels = {x.strip() for x in m.group(1).split(",")}
            fam = families.get(m.group(2)) or families.get(m.group(2).rsplit("_", 1)[0])
            sample_labels = set().union(*(set(lab) for _n, lab, _v in fam.samples)) if fam.samples else None
            if sample_labels is not None:
                assert labels <= sample_labels | TARGET_LABELS, (title, labels, sample_labels)
    assert families["relay_auth_failures_total"].value(code="invalid_metrics_token") == 1

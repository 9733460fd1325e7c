"""Monitoring as code (deploy/k8s/base/monitoring.yaml, alerts.yaml, dashboard.yaml), offline.

- The PrometheusRule's own ``spec.groups`` (never a copy) pass ``promtool check rules`` and the
  promtool unit tests of tests/deploy/alerts.test.yaml, where every alert fires and stays silent.
- Every alert has a severity, a summary and a runbook; every process has a ServiceMonitor on a
  port that the NetworkPolicy lets Prometheus reach; the dashboard ConfigMap holds valid JSON.
- Every metric the alerts and the dashboard name is one the processes export: real processes
  are started on the session's PostgreSQL and broker, given a little traffic, and scraped.

promtool comes with Debian's ``prometheus`` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shared.devstack.ports import free_port
from shared.kafka.tansu import DEV_TIMINGS_ENV
from shared.kafka.topics import ensure_topics
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from tests.deploy.kustomize import build
from tests.fake_wecom import FakeWeCom
from tests.integration.siyu.test_dev_stack import get, send_subscribe
from tests.kafka_helpers import wait_until

HERE = Path(__file__).resolve().parent
BASE = HERE.parents[1] / "deploy" / "k8s" / "base"
UNIT_TESTS = HERE / "alerts.test.yaml"
PROCESSES = ("ingest", "api", "segment", "outreach")
# Series Prometheus makes itself for every target, not exported by any process.
PROMETHEUS_OWN = {"up"}


def manifest(name: str, kind: str) -> dict:
    (obj,) = [o for o in yaml.safe_load_all((BASE / name).read_text()) if o["kind"] == kind]
    return obj


def rules() -> list[dict]:
    return [r for g in manifest("alerts.yaml", "PrometheusRule")["spec"]["groups"]
            for r in g["rules"]]  # fmt: skip


def dashboard() -> dict:
    return json.loads(manifest("dashboard.yaml", "ConfigMap")["data"]["siyu.json"])


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: install Debian's prometheus package "
                    "(apt-get install prometheus); the alert rules are tested with it")  # fmt: skip
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def write_groups(folder: Path, *, runbooks: bool = True) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file."""
    groups = manifest("alerts.yaml", "PrometheusRule")["spec"]["groups"]
    if not runbooks:  # the unit tests check each summary as rendered, not the long runbooks
        for rule in (r for g in groups for r in g["rules"]):
            rule["annotations"].pop("runbook")
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, allow_unicode=True, sort_keys=False))
    return path


# --- the rules -------------------------------------------------------------------------------


def test_the_rules_pass_promtool_check(tmp_path):
    result = promtool("check", "rules", str(write_groups(tmp_path)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_alerts_unit_tests_pass(tmp_path):
    write_groups(tmp_path, runbooks=False)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_threshold_fails_the_unit_tests(tmp_path):
    """The unit tests can fail: the ingest 5xx threshold raised tenfold goes unnoticed by none."""
    write_groups(tmp_path, runbooks=False)
    path = tmp_path / "rules.yaml"
    path.write_text(path.read_text().replace("> 0.05", "> 0.5", 1))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    result = promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "SiyuIngestErrors" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent():
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    assert tests["rule_files"] == ["rules.yaml"]  # written from the PrometheusRule, not copied
    cases: dict[str, set[bool]] = {}
    for test in tests["tests"]:
        for case in test["alert_rule_test"]:
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    alerts = {r["alert"] for r in rules()}
    assert alerts == set(cases)
    assert {name for name, seen in cases.items() if seen != {True, False}} == set()


def test_every_alert_says_what_it_is_and_what_to_do():
    for rule in rules():
        where = rule["alert"]
        assert rule["alert"].startswith("Siyu"), where
        assert rule["labels"]["severity"] in {"warning", "critical"}, where
        summary, runbook = rule["annotations"]["summary"], rule["annotations"]["runbook"]
        assert 20 <= len(summary) <= 200, where
        # Concrete: a command, a table, an API route or a dashboard panel to look at.
        assert re.search(r"kubectl|siyu |SELECT|/api/v1/|Dashboard", runbook), where
        assert len(runbook) >= 200, where


# --- scraping --------------------------------------------------------------------------------


def test_every_process_is_scraped_on_a_port_prometheus_may_reach():
    objects = build(BASE.parent / "overlays" / "prod")
    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    allowed = {
        p["port"]
        for rule in by_kind["NetworkPolicy"]["siyu-from-prometheus"]["spec"]["ingress"]
        for p in rule["ports"]
    }
    monitors = by_kind["ServiceMonitor"]
    for process in PROCESSES:
        service = by_kind["Service"][f"siyu-{process}"]
        (monitor,) = [
            m for m in monitors.values()
            if m["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        ]  # fmt: skip
        assert monitor["metadata"]["name"] == service["metadata"]["name"]  # the job label
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        (container,) = by_kind["Deployment"][f"siyu-{process}"]["spec"]["template"]["spec"][
            "containers"
        ]
        (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
        assert target["containerPort"] in allowed, process


def test_the_dashboard_is_valid_json_for_the_grafana_sidecar():
    config_map = manifest("dashboard.yaml", "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = dashboard()
    assert board["uid"] == "siyu"
    assert board["title"] == "Siyu"
    titles = {p["title"] for p in board["panels"]}
    assert {"Ingest requests", "Ingest latency", "Ingest 5xx ratio", "Consumer lag per group",
            "Dead letters", "Ingest outbox", "Stage changes per minute", "Deliveries by outcome",
            "Platform API errors"} <= titles  # fmt: skip
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"] for t in panel["targets"]), panel["title"]


# --- metric names ----------------------------------------------------------------------------

_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "bool", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, ranges, strings, grouping
    clauses, functions and keywords removed."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _CLAUSE.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if not rest.startswith("(") and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def test_metric_names_are_read_from_promql():
    expr = ('histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{x="b c", y=~"5.."}[5m])))'
            " / ignoring(z) group_left b_total > 0.5 and on(g) (c unless d offset 5m)")  # fmt: skip
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}


def referenced() -> dict[str, set[str]]:
    """Each metric name the alerts and the dashboard use, with where it is used."""
    uses: dict[str, set[str]] = {}
    for rule in rules():
        for name in metric_names(rule["expr"]):
            uses.setdefault(name, set()).add(f"alert {rule['alert']}")
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                uses.setdefault(name, set()).add(f"panel {panel['title']!r}")
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            (name,) = re.findall(r"label_values\((\w+)", variable["definition"])
            uses.setdefault(name, set()).add(f"variable {variable['name']}")
    return uses


def series_names(exposition: str) -> set[str]:
    """The series names a scrape holds, a declared family with no sample yet included (its
    samples' names follow from its type: a counter's _total, a histogram's _bucket...)."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count"), "untyped": ("",)}  # fmt: skip
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture
def database(own_database):
    return own_database


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_every_metric_the_alerts_and_the_dashboard_name_is_exported(
    database, kafka, tmp_path, monkeypatch
):
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)  # the webhook below is signed with the demo tenant's
    ensure_topics(kafka)
    fake = FakeWeCom(load_tenants(DEMO_TENANTS_PATH), DEMO_SECRETS).start()
    env = {
        **os.environ, **DEMO_SECRETS,
        "SIYU_DATABASE_URL": database, "SIYU_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "SIYU_TOPIC_PREFIX": kafka.topic_prefix, "SIYU_KAFKA_PARTITIONS": str(kafka.partitions),
        **DEV_TIMINGS_ENV, "SIYU_HOME": str(tmp_path / "home"),
        "SIYU_WECOM_API_BASE": fake.base_url, "SIYU_WECHAT_API_BASE": fake.oa_base_url,
        "SIYU_LINK_SECRET": "monitoring-test-link-secret", "SIYU_LOG_LEVEL": "WARNING",
        "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
    }  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ports = {process: free_port() for process in PROCESSES}
    argv = {
        "ingest": ["ingest", "serve", "--port", str(ports["ingest"]), "--workers", "2"],
        "api": ["api", "serve", "--port", str(ports["api"]), "--workers", "2"],
        "segment": ["segment", "consume", "--metrics-port", str(ports["segment"])],
        "outreach": ["outreach", "worker", "--metrics-port", str(ports["outreach"])],
    }
    siyu = str(Path(sys.executable).with_name("siyu"))
    started = []
    try:
        for process in PROCESSES:
            log = (tmp_path / f"{process}.log").open("ab")
            started.append(subprocess.Popen([siyu, *argv[process]], env=env, stdout=log,
                                            stderr=subprocess.STDOUT))  # fmt: skip
        url = {process: f"http://127.0.0.1:{port}" for process, port in ports.items()}
        for process in PROCESSES:  # /readyz also sets siyu_ready
            wait_until(lambda p=process: get(f"{url[p]}/readyz")[0] == 200, timeout=60,
                       message=f"{process} to be ready")  # fmt: skip
        # Under gunicorn a metric appears once a worker has observed it: a little traffic.
        send_subscribe(ports["ingest"])
        get(f"{url['api']}/api/v1/me")

        def exported() -> set[str]:
            names: set[str] = set()
            for process in PROCESSES:
                status, body = get(f"{url[process]}/metrics")
                assert status == 200, process
                names |= series_names(body.decode())
            return names

        # The outbox gauge is set by each ingest worker's replayer, once a second.
        wait_until(lambda: "siyu_ingest_outbox_depth" in exported(), timeout=30,
                   message="the outbox gauge to be exported")  # fmt: skip
        names = exported()
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        fake.stop()
    missing = {
        name: sorted(where) for name, where in referenced().items()
        if name not in names and name not in PROMETHEUS_OWN
    }  # fmt: skip
    assert missing == {}, "named but not exported: " + json.dumps(missing, indent=1)

"""The chart's files agree with the operator they deploy: settings and their defaults, metric names, the RBAC
rule list; and hack/sync_chart.py copies and checks what it generates. Pure: no helm, no cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from elastic_operator.config import OperatorSettings
from elastic_operator.metrics import OperatorMetrics
from hack import sync_chart

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "elastic-training-operator"

# values.yaml key under operator.* (or elsewhere) -> OperatorSettings field
SETTING_VALUES = {
    "node_selector": ("operator", "nodeSelector"),
    "gpu_resource": ("operator", "gpuResource"),
    "planner_interval_s": ("operator", "plannerIntervalS"),
    "planner_debounce_s": ("operator", "plannerDebounceS"),
    "report_port": ("operator", "ports", "report"),
    "report_url": ("operator", "reportUrl"),
    "metrics_port": ("operator", "ports", "metrics"),
    "health_port": ("operator", "ports", "health"),
    "apply_concurrency": ("operator", "applyConcurrency"),
    "apply_budget_s": ("operator", "applyBudgetS"),
    "queue_status_interval_s": ("operator", "queueStatusIntervalS"),
    "queue_status_writes_per_s": ("operator", "queueStatusWritesPerS"),
    "informational_writes_per_round": ("operator", "informationalWritesPerRound"),
    "rescale_pause_s": ("operator", "rescalePauseS"),
    "grow_mode": ("operator", "growMode"),
    "shrink_deadline_s": ("operator", "shrinkDeadlineS"),
    "start_deadline_s": ("operator", "startDeadlineS"),
    "rendezvous_port": ("operator", "rendezvousPort"),
    "namespaces": ("watch", "namespaces"),
}
FIXED_BY_CHART = {"report_host", "standalone"}  # the Deployment sets these; they are not values


def values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def test_every_operator_setting_is_a_value_with_the_same_default() -> None:
    assert set(SETTING_VALUES) | FIXED_BY_CHART == set(OperatorSettings.model_fields)
    v = values()
    for field, path in SETTING_VALUES.items():
        value: Any = v
        for key in path:
            value = value[key]
        assert value == OperatorSettings.model_fields[field].get_default(call_default_factory=True), field


def test_every_setting_reaches_the_container_as_its_env_var() -> None:
    template = (CHART / "templates" / "deployment.yaml").read_text()
    for field in OperatorSettings.model_fields:
        assert f"name: ELASTIC_OPERATOR_{field.upper()}\n" in template, field
    assert "name: ELASTIC_OPERATOR_TOKEN_KEY\n" in template


def test_schema_enums_match_the_operator() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    grow = schema["properties"]["operator"]["properties"]["growMode"]["enum"]
    pattern = OperatorSettings.model_fields["grow_mode"].metadata[0].pattern
    match = re.fullmatch(r"\^\((.*)\)\$", pattern)
    assert match, pattern
    assert sorted(grow) == sorted(match.group(1).split("|"))


def exported_metric_names() -> set[str]:
    names = set()
    for metric in OperatorMetrics().registry.collect():
        names.add(metric.name + ("_total" if metric.type == "counter" else ""))
    return names


def test_dashboard_and_alerts_use_exactly_the_exported_metrics() -> None:
    exported = exported_metric_names()
    dashboard = (CHART / "dashboards" / "grafana.json").read_text()
    used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"elastic_training_[a-z_]+", dashboard)}
    assert used == exported
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    alert_metrics = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"elastic_training_[a-z_]+", rules)}
    assert alert_metrics <= exported


def test_rbac_rules_have_no_wildcards_and_known_scopes() -> None:
    rules = yaml.safe_load((CHART / "rbac" / "rules.yaml").read_text())
    assert set(rules) == {"cluster", "watched"}
    for rule in rules["cluster"] + rules["watched"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        for item in rule["apiGroups"] + rule["resources"] + rule["verbs"]:
            assert "*" not in item


# -- hack/sync_chart.py -----------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    chart = repo / "charts" / "elastic-training-operator"
    (repo / "crds").mkdir(parents=True)
    (chart / "crds").mkdir(parents=True)
    (chart / "rbac").mkdir()
    (repo / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.3"\n')
    (chart / "Chart.yaml").write_text('apiVersion: v2\nname: x\nversion: 0.1.0\nappVersion: "0.0.1"\n')
    (chart / "rbac" / "rules.yaml").write_text(
        "cluster:\n  - {apiGroups: [''], resources: [nodes], verbs: [get]}\nwatched: []\n"
    )
    (chart / "README.md").write_text(f"# x\n\n{sync_chart.BEGIN}\nold\n{sync_chart.END}\n\nend\n")
    (repo / "crds" / "a.yaml").write_text("kind: CustomResourceDefinition\n")
    (chart / "crds" / "gone.yaml").write_text("stale\n")
    return repo, chart


def test_sync_plans_copies_version_table_and_stale_files(tree: tuple[Path, Path]) -> None:
    repo, chart = tree
    writes, stale = sync_chart.plan(repo, chart)
    assert writes[chart / "crds" / "a.yaml"] == b"kind: CustomResourceDefinition\n"
    assert b'appVersion: "1.2.3"' in writes[chart / "Chart.yaml"]
    readme = writes[chart / "README.md"].decode()
    assert "| cluster-wide | `core` | `nodes` | get |" in readme and "old" not in readme
    assert readme.endswith("\n\nend\n")
    assert stale == [chart / "crds" / "gone.yaml"]


def test_sync_check_fails_on_drift_and_passes_after_sync(tree: tuple[Path, Path]) -> None:
    repo, chart = tree
    assert sync_chart.main(["--check"], repo=repo, chart=chart) == 1
    assert sync_chart.main([], repo=repo, chart=chart) == 0
    assert sync_chart.main(["--check"], repo=repo, chart=chart) == 0
    assert not (chart / "crds" / "gone.yaml").exists()
    (repo / "crds" / "a.yaml").write_text("changed\n")
    assert sync_chart.main(["--check"], repo=repo, chart=chart) == 1

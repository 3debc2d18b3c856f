"""The Helm chart: lint and render over a values matrix, bad values rejected by the schema, install on a real API
server, restricted Pod Security admission of the operator pod, and RBAC that is exactly the documented list.

Rendering tests need only the pinned helm binary; the rest use the local control plane (`cluster` fixture).
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.devcluster import REPO, DevCluster, binaries
from tests.support.rbac import CHART, chart_rules, grant_chart_rules, permissions, without_verb
from tests.support.wait import wait_for

BAD_VALUES = sorted((REPO / "tests" / "chart_values").glob("*.yaml"))
MONITORING_APIS = ["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]
METRICS = [
    "elastic_training_queue_depth",
    "elastic_training_jobs",
    "elastic_training_workers_allocated",
    "elastic_training_capacity",
    "elastic_training_rescales_total",
    "elastic_training_restarts_total",
    "elastic_training_plan_duration_seconds",
    "elastic_training_rescale_pause_seconds",
    "elastic_training_apply_errors_total",
    "elastic_training_report_latency_seconds",
    "elastic_training_reports_total",
    "elastic_training_decisions_total",
]

# The documented API access of the operator (docs/operations.md, charts/.../README.md): what it calls, nothing more.
DOCUMENTED_CLUSTER = {
    ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
    ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
}  # fmt: skip
DOCUMENTED_WATCHED = {
    ("", "pods", "create"), ("", "pods", "delete"),
    ("", "secrets", "create"),
    ("networking.k8s.io", "networkpolicies", "create"),
    ("events.k8s.io", "events", "create"),
    ("", "events", "create"),
    *(("elastic.training", "trainingjobs", v) for v in ("get", "list", "watch", "create", "delete")),
    ("elastic.training", "trainingjobs/status", "get"), ("elastic.training", "trainingjobs/status", "patch"),
    *(("elastic.training", "tuningsweeps", v) for v in ("get", "list", "watch")),
    ("elastic.training", "tuningsweeps/status", "get"), ("elastic.training", "tuningsweeps/status", "patch"),
}  # fmt: skip

MATRIX: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watch": {"namespaces": ["team-a", "team-b"]}},
    "cluster-wide-tuned": {
        "watch": {"namespaces": []},
        "operator": {
            "growMode": "fair",
            "plannerIntervalS": 2.5,
            "nodeSelector": "pool=gpu,zone=a",
            "logLevel": "DEBUG",
        },
    },
    "monitoring": {"monitoring": {"enabled": True, "dashboard": {"enabled": True}}},
    "locked-down": {
        "image": {"digest": "sha256:" + "a" * 64},
        "tokenKey": {"existingSecret": "my-token-key"},
        "networkPolicy": {"apiServer": {"cidrs": ["10.96.0.1/32"], "ports": [443]}, "allowDNS": False},
    },
    "bring-your-own-account": {
        "serviceAccount": {"create": False, "name": "preexisting"},
        "rbac": {"create": False},
        "networkPolicy": {"enabled": False},
    },
}


# -- helpers -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Path:
    return binaries()["helm"]


def run_helm(
    helm: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, env=env, timeout=180, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def render(
    helm: Path, tmp_path: Path, values: dict[str, Any], *, release: str = "eto", namespace: str = "elastic-system"
) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "-n", namespace, "-f", str(values_file(tmp_path, values))]
    for api in MONITORING_APIS:
        args += ["--api-versions", api]
    docs = yaml.safe_load_all(run_helm(helm, *args).stdout)
    return [d for d in docs if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def rendered_permissions(docs: list[dict[str, Any]], kind: str) -> dict[str, set[tuple[str, str, str]]]:
    """Role name (namespace/name for Roles) -> its (group, resource, verb) triples."""
    out = {}
    for d in by_kind(docs, kind):
        key = f"{d['metadata'].get('namespace', '')}/{d['metadata']['name']}".lstrip("/")
        out[key] = permissions(d["rules"])
    return out


def pod_from_deployment(deployment: dict[str, Any], namespace: str, name: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


def restricted_namespace(cluster: DevCluster, namespace: str) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/warn-version=latest",
    )  # fmt: skip


# -- rendering (no cluster) ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_lint_and_template(helm: Path, tmp_path: Path, case: str) -> None:
    values = MATRIX[case]
    run_helm(helm, "lint", "--strict", str(CHART), "-n", "elastic-system", "-f", str(values_file(tmp_path, values)))
    docs = render(helm, tmp_path, values)
    namespaces = values.get("watch", {}).get("namespaces") or []

    for d in docs:  # every namespaced object lands in the release namespace or a watched one
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] in ("elastic-system", *namespaces), d["metadata"]

    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    env = {e["name"]: e for e in container["env"]}
    assert json.loads(env["ELASTIC_OPERATOR_NAMESPACES"]["value"]) == namespaces
    assert env["ELASTIC_OPERATOR_STANDALONE"]["value"] == "true"
    key_ref = env["ELASTIC_OPERATOR_TOKEN_KEY"]["valueFrom"]["secretKeyRef"]
    assert (
        env["ELASTIC_OPERATOR_REPORT_URL"]["value"]
        == "http://eto-elastic-training-operator-reports.elastic-system.svc:8080"
    )
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert services["eto-elastic-training-operator-reports"]["spec"]["ports"][0]["port"] == 8080
    assert services["eto-elastic-training-operator-metrics"]["spec"]["ports"][0]["port"] == 9090

    if case == "cluster-wide-tuned":
        assert env["ELASTIC_OPERATOR_GROW_MODE"]["value"] == "fair"
        assert env["ELASTIC_OPERATOR_PLANNER_INTERVAL_S"]["value"] == "2.5"
        assert env["ELASTIC_OPERATOR_NODE_SELECTOR"]["value"] == "pool=gpu,zone=a"
        assert container["args"] == ["--log-level", "DEBUG"]
    if case == "locked-down":
        assert container["image"].endswith("@sha256:" + "a" * 64)
        assert key_ref["name"] == "my-token-key"
        assert not by_kind(docs, "Secret")
        egress = one(docs, "NetworkPolicy")["spec"]["egress"]
        assert egress == [{"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}]}]
    else:
        secret = one(docs, "Secret")
        assert key_ref["name"] == secret["metadata"]["name"]
        assert key_ref["key"] in secret["data"]
    if case == "bring-your-own-account":
        assert pod["serviceAccountName"] == "preexisting"
        for kind in ("ServiceAccount", "NetworkPolicy", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding"):
            assert not by_kind(docs, kind), kind
    else:
        account = one(docs, "ServiceAccount")
        assert account["automountServiceAccountToken"] is False
        assert pod["automountServiceAccountToken"] is True
        assert pod["serviceAccountName"] == account["metadata"]["name"]
    if case == "monitoring":
        monitor = one(docs, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        rule = one(docs, "PrometheusRule")
        alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
        assert set(alerts) == {
            "ElasticTrainingOperatorDown",
            "ElasticTrainingApplyErrorsRising",
            "ElasticTrainingPlanSlow",
            "ElasticTrainingJobsQueuedWithFreeCapacity",
        }
        assert "elastic_training_apply_errors_total" in alerts["ElasticTrainingApplyErrorsRising"]
        assert "elastic_training_plan_duration_seconds_bucket" in alerts["ElasticTrainingPlanSlow"]
        (dashboard,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["labels"].get("grafana_dashboard")]
        text = dashboard["data"]["elastic-training-operator.json"]
        assert json.loads(text)["panels"]
        assert [m for m in METRICS if m not in text] == []
    else:
        assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "PrometheusRule")


@pytest.mark.parametrize("path", BAD_VALUES, ids=[p.stem for p in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_value(helm: Path, path: Path) -> None:
    expect = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    assert expect, f"{path} must start with '# expect: <text the error names>'"
    result = run_helm(helm, "template", "eto", str(CHART), "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert expect in result.stderr, result.stderr


def test_enough_bad_value_sets() -> None:
    assert len(BAD_VALUES) >= 10


def test_roles_grant_exactly_the_documented_rules(helm: Path, tmp_path: Path) -> None:
    assert permissions(chart_rules()["cluster"]) == DOCUMENTED_CLUSTER
    assert permissions(chart_rules()["watched"]) == DOCUMENTED_WATCHED

    cluster_wide = render(helm, tmp_path, {}, release="eto", namespace="ops")
    assert rendered_permissions(cluster_wide, "ClusterRole") == {
        "ops-eto-elastic-training-operator-cluster": DOCUMENTED_CLUSTER,
        "ops-eto-elastic-training-operator-watched": DOCUMENTED_WATCHED,
    }
    assert not by_kind(cluster_wide, "Role")

    namespaced = render(helm, tmp_path, {"watch": {"namespaces": ["a", "b"]}}, release="eto", namespace="ops")
    assert rendered_permissions(namespaced, "ClusterRole") == {
        "ops-eto-elastic-training-operator-cluster": DOCUMENTED_CLUSTER
    }
    assert rendered_permissions(namespaced, "Role") == {
        "a/ops-eto-elastic-training-operator-watched": DOCUMENTED_WATCHED,
        "b/ops-eto-elastic-training-operator-watched": DOCUMENTED_WATCHED,
    }
    for docs in (cluster_wide, namespaced):
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for rule in role["rules"]:
                assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames, nonResourceURLs
                assert "*" not in json.dumps(rule), rule
        bound = {(b["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"]) for b in
                 by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")}  # fmt: skip
        roles = {(("ClusterRoleBinding" if r["kind"] == "ClusterRole" else "RoleBinding"),
                  r["metadata"].get("namespace"), r["metadata"]["name"]) for r in
                 by_kind(docs, "ClusterRole") + by_kind(docs, "Role")}  # fmt: skip
        assert bound == roles  # every role bound, once, to the operator's account


# -- on the API server ---------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_every_matrix_rendering_is_valid_for_the_api_server(
    cluster: DevCluster, helm: Path, namespace: str, tmp_path: Path
) -> None:
    """Server-side dry-run of every object each values set renders (Prometheus Operator kinds aside: their CRDs
    are not installed here), so schema-valid values never render objects the API server refuses."""
    for case, matrix_values in sorted(MATRIX.items()):
        values = dict(matrix_values)
        if values.get("watch", {}).get("namespaces"):
            values["watch"] = {"namespaces": [namespace]}
        docs = render(helm, tmp_path, values, release=f"dry-{case}"[:20].strip("-"), namespace=namespace)
        core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
        listing = {"apiVersion": "v1", "kind": "List", "items": core}
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(listing), check=False)
        assert result.returncode == 0, f"{case}: {result.stderr}"


@pytest.mark.cluster
def test_operator_pod_is_admitted_under_restricted_pod_security(
    cluster: DevCluster, helm: Path, namespace: str, tmp_path: Path
) -> None:
    restricted_namespace(cluster, namespace)
    docs = render(helm, tmp_path, {}, release="pss", namespace=namespace)
    pod = pod_from_deployment(one(docs, "Deployment"), namespace, "operator-dry-run")
    cluster.kubectl("create", "serviceaccount", pod["spec"]["serviceAccountName"], "-n", namespace)

    ok = cluster.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(pod))
    assert "would violate PodSecurity" not in ok.stderr, ok.stderr

    # control: the same pod, weakened, is refused, so the namespace really enforces "restricted"
    weak = json.loads(json.dumps(pod))
    weak["spec"]["securityContext"].pop("runAsNonRoot")
    weak["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(weak), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


@pytest.mark.cluster
def test_install_upgrade_uninstall(cluster: DevCluster, helm: Path, namespace: str) -> None:
    restricted_namespace(cluster, namespace)
    release = f"eto-{uuid.uuid4().hex[:6]}"
    fullname = f"{release}-elastic-training-operator"
    cluster_name = f"{namespace}-{fullname}"
    env = cluster.env()
    run_helm(helm, "install", release, str(CHART), "-n", namespace, "--set", f"watch.namespaces={{{namespace}}}",
             "--timeout", "2m", env=env)  # fmt: skip
    try:
        status = json.loads(run_helm(helm, "status", release, "-n", namespace, "-o", "json", env=env).stdout)
        assert status["info"]["status"] == "deployed"
        assert "kubectl get trainingjobs" in status["info"]["notes"]

        cluster.kubectl("get", "clusterrole", f"{cluster_name}-cluster")
        cluster.kubectl("get", "role,rolebinding", f"{cluster_name}-watched", "-n", namespace)
        assert cluster.kubectl("get", "clusterrole", f"{cluster_name}-watched", check=False).returncode != 0

        # the Deployment's pod passes admission (restricted) and exists, whether or not a node runs it
        selector = f"app.kubernetes.io/instance={release}"
        wait_for(
            lambda: cluster.get_json("pods", "-n", namespace, "-l", selector)["items"],
            timeout=60,
            message=f"the operator pod of {release} to be created (admission: restricted)",
        )

        # the chart's own account: the rules in the watched namespace, reads cluster-wide, nothing elsewhere
        account = f"system:serviceaccount:{namespace}:{fullname}"

        def can(*args: str) -> bool:
            return cluster.kubectl("auth", "can-i", *args, f"--as={account}", check=False).stdout.strip() == "yes"

        assert can("create", "pods", "-n", namespace)
        if _served(cluster, "trainingjobs.elastic.training"):
            assert can("patch", "trainingjobs.elastic.training", "--subresource=status", "-n", namespace)
            assert not can("patch", "trainingjobs.elastic.training", "-n", namespace)
        assert can("list", "nodes")
        assert can("watch", "pods", "--all-namespaces")
        assert not can("create", "pods", "-n", "default")
        assert not can("get", "secrets", "-n", namespace)

        # CRDs from the chart's crds/ folder are served
        for crd_file in sorted((CHART / "crds").glob("*.yaml")):
            crd = yaml.safe_load(crd_file.read_text())
            cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
            cluster.kubectl("get", crd["spec"]["names"]["plural"] + "." + crd["spec"]["group"], "-n", namespace)

        # an upgrade keeps the report-token key (running trainers keep valid tokens) and applies new settings
        secret_name = f"{fullname}-token-key"
        before = cluster.get_json("secret", secret_name, "-n", namespace)["data"]
        run_helm(helm, "upgrade", release, str(CHART), "-n", namespace, "--reuse-values",
                 "--set", "operator.growMode=fair", env=env)  # fmt: skip
        assert cluster.get_json("secret", secret_name, "-n", namespace)["data"] == before
        deployment = cluster.get_json("deployment", fullname, "-n", namespace)
        env_vars = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env_vars["ELASTIC_OPERATOR_GROW_MODE"] == "fair"
    finally:
        run_helm(helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "2m", env=env, check=False)
    assert cluster.kubectl("get", "clusterrole", f"{cluster_name}-cluster", check=False).returncode != 0
    assert cluster.kubectl("get", "clusterrolebinding", f"{cluster_name}-cluster", check=False).returncode != 0


def _can_i_list(cluster: DevCluster, username: str, namespace: str) -> set[tuple[str, str]]:
    """Every (resource[.group][/sub], verb) `username` may use in `namespace`, from `kubectl auth can-i --list`,
    less the self-review permissions every authenticated user has."""
    out = cluster.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as={username}").stdout
    granted: set[tuple[str, str]] = set()
    for line in out.splitlines()[1:]:
        if not line.strip() or line[0].isspace():  # non-resource URLs (discovery) have no resource column
            continue
        resource = line.split()[0]
        if resource.startswith("selfsubject"):
            continue
        verbs = re.search(r"\[([^\]]*)\]\s*$", line)
        assert verbs, line
        granted |= {(resource, v) for v in verbs.group(1).split()}
    return granted


def _kubectl_resource(group: str, resource: str) -> str:
    """How `kubectl auth can-i --list` spells a resource: pods, trainingjobs.elastic.training/status."""
    name, _, sub = resource.partition("/")
    spelled = f"{name}.{group}" if group else name
    return f"{spelled}/{sub}" if sub else spelled


def _served(cluster: DevCluster, resource: str) -> bool:
    """Whether the API server serves `resource` (kubectl auth can-i answers "no" for kinds it cannot discover)."""
    return cluster.kubectl("get", resource, "-A", "--chunk-size=1", "-o", "name", check=False).returncode == 0


REMOVALS = [("", "pods", "delete"), ("elastic.training", "trainingjobs", "delete")]


@pytest.mark.cluster
def test_removing_one_verb_removes_exactly_that_permission(cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    rules = chart_rules()
    expected = {(_kubectl_resource(g, r), v) for g, r, v in DOCUMENTED_CLUSTER | DOCUMENTED_WATCHED}
    full = grant_chart_rules(cluster, namespace, tmp_path, name="full", watch_namespaces=[namespace])
    accounts = [full]
    try:
        assert _can_i_list(cluster, full.username, namespace) == expected
        for i, (group, resource, verb) in enumerate(REMOVALS):
            reduced = grant_chart_rules(
                cluster, namespace, tmp_path, name=f"reduced-{i}", watch_namespaces=[namespace],
                rules=without_verb(rules, group, resource, verb),
            )  # fmt: skip
            accounts.append(reduced)
            lost = (_kubectl_resource(group, resource), verb)
            wait_for(
                lambda account=reduced, lost=lost: (
                    _can_i_list(cluster, account.username, namespace) == expected - {lost}
                ),
                timeout=30,
                message=f"{reduced.username} to lack exactly {lost}",
            )
            kubectl_name = _kubectl_resource(group, resource)
            if group and not _served(cluster, kubectl_name):
                continue  # CRDs not installed here: can-i cannot resolve the kind (the --list check above holds)
            assert full.can_i(verb, kubectl_name, namespace)
            assert not reduced.can_i(verb, kubectl_name, namespace)
            other_verbs = {v for g, r, v in DOCUMENTED_WATCHED if (g, r) == (group, resource)} - {verb}
            for other in sorted(other_verbs):
                assert reduced.can_i(other, kubectl_name, namespace), other

        # scope: the watched rules hold in the namespace only; the cluster rules everywhere
        assert full.can_i("create", "pods", namespace)
        assert not full.can_i("create", "pods", "default")
        assert full.can_i("list", "nodes") and full.can_i("watch", "pods")
        assert not full.can_i("get", "secrets", namespace)

        # the returned kubeconfig authenticates as the account and is limited by its rules
        as_account = [str(cluster.bins["kubectl"]), f"--kubeconfig={full.kubeconfig}"]
        whoami = subprocess.run(
            [*as_account, "auth", "whoami", "-o", "json"], capture_output=True, text=True, check=True
        )
        assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == full.username
        listed = subprocess.run(
            [*as_account, "get", "nodes", "-o", "name"], capture_output=True, text=True, check=False
        )
        assert listed.returncode == 0, listed.stderr
        denied = subprocess.run(
            [*as_account, "get", "secrets", "-n", namespace], capture_output=True, text=True, check=False
        )
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    finally:
        for account in accounts:
            account.revoke()

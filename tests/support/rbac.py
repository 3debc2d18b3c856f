"""Run things as the operator's ServiceAccount would: exactly the rules the Helm chart grants, no more.

    creds = grant_chart_rules(cluster, namespace, tmp_path)               # the chart's rules, cluster-wide scope
    creds = grant_chart_rules(cluster, namespace, tmp_path, watch_namespaces=[namespace])   # Role per namespace
    creds = grant_chart_rules(cluster, namespace, tmp_path,
                              rules=without_verb(chart_rules(), "elastic.training", "trainingjobs", "delete"))
    env = {**cluster.env(), "KUBECONFIG": str(creds.kubeconfig)}         # e.g. for the operator subprocess
    ...
    creds.revoke()                                                        # cluster-scoped objects; or let the
                                                                          # namespace's deletion take the rest

The rules come from charts/elastic-training-operator/rbac/rules.yaml, the one list the chart's roles are
rendered from; tests/integration/test_chart.py checks that the rendered roles equal it and the documented list.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hack.devcluster import REPO, DevCluster, wait_for

CHART = REPO / "charts" / "elastic-training-operator"
RULES_FILE = CHART / "rbac" / "rules.yaml"

Rule = dict[str, list[str]]
Rules = dict[str, list[Rule]]  # {"cluster": [...], "watched": [...]}


def chart_rules() -> Rules:
    """The chart's rule list: {"cluster": rules granted cluster-wide, "watched": rules for watched namespaces}."""
    rules: Rules = yaml.safe_load(RULES_FILE.read_text())
    return rules


def permissions(rules: Iterable[Rule]) -> set[tuple[str, str, str]]:
    """Flatten rules into (apiGroup, resource, verb) triples."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def without_verb(rules: Rules, api_group: str, resource: str, verb: str, scope: str | None = None) -> Rules:
    """A copy of `rules` lacking one verb on one resource (in every scope, or only in `scope`). Rules left with
    no verb are dropped. Raises if nothing was removed, so a typo cannot make a test vacuous."""
    out: Rules = {}
    removed = False
    for name, scoped in rules.items():
        if scope is not None and name != scope:
            out[name] = copy.deepcopy(scoped)
            continue
        kept: list[Rule] = []
        for rule in scoped:
            # one rule per (group, resource) so that only the target loses the verb
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    verbs = list(rule["verbs"])
                    if (group, res) == (api_group, resource) and verb in verbs:
                        verbs.remove(verb)
                        removed = True
                    if verbs:
                        kept.append({"apiGroups": [group], "resources": [res], "verbs": verbs})
        out[name] = kept
    if not removed:
        raise ValueError(f"no rule grants {verb} on {resource} in group {api_group!r}")
    return out


@dataclass
class ServiceAccountCredentials:
    """A ServiceAccount bound to a rule set, with a short-lived token and a kubeconfig that uses it."""

    cluster: DevCluster
    namespace: str
    name: str
    token: str
    kubeconfig: Path
    cluster_objects: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) to delete on revoke

    @property
    def username(self) -> str:
        """The name to impersonate: `kubectl auth can-i --as=<username>`."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def env(self) -> dict[str, str]:
        """cluster.env() with KUBECONFIG pointing at this ServiceAccount's kubeconfig."""
        return {**self.cluster.env(), "KUBECONFIG": str(self.kubeconfig)}

    def can_i(self, verb: str, resource: str, namespace: str | None = None) -> bool:
        """`kubectl auth can-i VERB RESOURCE --as=<this account>`; resource as kubectl spells it, e.g.
        `trainingjobs.elastic.training`, `trainingjobs.elastic.training/status`, `pods`."""
        args = ["auth", "can-i", verb, resource, f"--as={self.username}"]
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        result = self.cluster.kubectl(*args, check=False)
        answer = result.stdout.strip()
        if answer not in ("yes", "no"):
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip() or answer}")
        return answer == "yes"

    def revoke(self) -> None:
        """Delete the cluster-scoped objects (ClusterRoles, ClusterRoleBindings); namespaced ones go with their
        namespace."""
        for kind, name in self.cluster_objects:
            self.cluster.kubectl("delete", kind, name, "--ignore-not-found", "--wait=false", check=False)


def grant_chart_rules(
    cluster: DevCluster,
    namespace: str,
    directory: Path,
    *,
    name: str = "elastic-operator",
    rules: Rules | None = None,
    watch_namespaces: list[str] | None = None,
    token_duration: str = "2h",
) -> ServiceAccountCredentials:
    """Create ServiceAccount `name` in `namespace` holding `rules` (default: the chart's) the way the chart grants
    them: "cluster" rules through a ClusterRole; "watched" rules through a ClusterRole when `watch_namespaces` is
    None, else through a Role and RoleBinding in each listed namespace. Returns a TokenRequest token and a
    kubeconfig (written under `directory`) that authenticate as that account."""
    rules = chart_rules() if rules is None else rules
    prefix = f"{namespace}-{name}"
    subject = [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace},
         "automountServiceAccountToken": False},
    ]  # fmt: skip
    cluster_objects: list[tuple[str, str]] = []

    def binding(kind: str, role_kind: str, obj_name: str, ns: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": obj_name, **({"namespace": ns} if ns else {})}
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": obj_name},
            "subjects": subject,
        }

    def role(kind: str, obj_name: str, scoped: list[Rule], ns: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": obj_name, **({"namespace": ns} if ns else {})}
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": scoped}

    objects += [role("ClusterRole", f"{prefix}-cluster", rules.get("cluster", []), None)]
    objects += [binding("ClusterRoleBinding", "ClusterRole", f"{prefix}-cluster", None)]
    cluster_objects += [("clusterrolebinding", f"{prefix}-cluster"), ("clusterrole", f"{prefix}-cluster")]
    if watch_namespaces is None:
        objects += [role("ClusterRole", f"{prefix}-watched", rules.get("watched", []), None)]
        objects += [binding("ClusterRoleBinding", "ClusterRole", f"{prefix}-watched", None)]
        cluster_objects += [("clusterrolebinding", f"{prefix}-watched"), ("clusterrole", f"{prefix}-watched")]
    else:
        for ns in watch_namespaces:
            objects += [role("Role", f"{prefix}-watched", rules.get("watched", []), ns)]
            objects += [binding("RoleBinding", "Role", f"{prefix}-watched", ns)]
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": objects})

    token = cluster.kubectl("create", "token", name, "-n", namespace, f"--duration={token_duration}").stdout.strip()
    kubeconfig = directory / f"kubeconfig-{namespace}-{name}"
    kubeconfig.write_text(json.dumps(_token_kubeconfig(cluster, token, f"{namespace}-{name}"), indent=2))
    kubeconfig.chmod(0o600)
    creds = ServiceAccountCredentials(cluster, namespace, name, token, kubeconfig, cluster_objects)
    # RBAC objects take effect through the authorizer's informers: wait until the binding is visible.
    wait_for(
        lambda: _whoami_ok(cluster, kubeconfig),
        timeout=30,
        message=f"the token of ServiceAccount {namespace}/{name} to authenticate",
    )
    return creds


def _token_kubeconfig(cluster: DevCluster, token: str, user: str) -> dict[str, Any]:
    """A kubeconfig for the same API server as `cluster`'s current context, authenticating with `token`."""
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context_name = admin.get("current-context")
    context = next(c["context"] for c in admin["contexts"] if c["name"] == context_name)
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": server["name"], "cluster": server["cluster"]}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": server["name"], "user": user}}],
        "current-context": user,
    }


def _whoami_ok(cluster: DevCluster, kubeconfig: Path) -> bool:
    cmd = [str(cluster.bins["kubectl"]), f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return result.returncode == 0

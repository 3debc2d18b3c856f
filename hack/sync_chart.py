"""Bring the Helm chart up to date with what is generated elsewhere, or (--check) fail when it is not.

What the chart holds that is generated:
- crds/*.yaml, copied byte for byte from the repository's crds/ (which `make crds` generates from the models);
  chart CRD files that no longer exist upstream are removed;
- Chart.yaml's appVersion: the project's version from pyproject.toml (the default image tag);
- README.md's RBAC table, rendered from rbac/rules.yaml (the one list the chart's roles are made from).

    python hack/sync_chart.py           # write
    python hack/sync_chart.py --check   # exit 1 and name every file that differs (for `make lint` / CI)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "elastic-training-operator"
BEGIN = "<!-- BEGIN GENERATED: rbac (hack/sync_chart.py) -->"
END = "<!-- END GENERATED: rbac -->"


def desired_crds(repo: Path = REPO) -> dict[str, bytes]:
    """File name -> content of every CRD the chart must ship."""
    return {p.name: p.read_bytes() for p in sorted((repo / "crds").glob("*.yaml"))}


def desired_chart_yaml(text: str, version: str) -> str:
    """Chart.yaml with appVersion set to the project's version (the line is rewritten in place)."""
    line = f'appVersion: "{version}"'
    new, count = re.subn(r"(?m)^appVersion:.*$", line, text)
    if count == 0:
        new = text.rstrip("\n") + "\n" + line + "\n"
    return new


def project_version(repo: Path = REPO) -> str:
    data = tomllib.loads((repo / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def rbac_table(rules: dict[str, list[dict[str, Any]]]) -> str:
    """A Markdown table of rbac/rules.yaml: scope, API group, resource, verbs."""
    scopes = {
        "cluster": "cluster-wide",
        "watched": "watched namespaces",
    }
    lines = ["| Scope | API group | Resource | Verbs |", "| --- | --- | --- | --- |"]
    for scope, label in scopes.items():
        for rule in rules.get(scope, []):
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    verbs = ", ".join(rule["verbs"])
                    lines.append(f"| {label} | `{group or 'core'}` | `{resource}` | {verbs} |")
    return "\n".join(lines)


def desired_readme(text: str, rules: dict[str, list[dict[str, Any]]]) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    block = f"{BEGIN}\n{rbac_table(rules)}\n{END}"
    if not pattern.search(text):
        raise SystemExit(f"the chart's README.md lacks the markers {BEGIN!r} ... {END!r}")
    return pattern.sub(lambda _: block, text)


def plan(repo: Path = REPO, chart: Path = CHART) -> tuple[dict[Path, bytes], list[Path]]:
    """(files to write with their wanted content, files to delete)."""
    writes: dict[Path, bytes] = {}
    crds = desired_crds(repo)
    for name, content in crds.items():
        writes[chart / "crds" / name] = content
    stale = [p for p in sorted((chart / "crds").glob("*.yaml")) if p.name not in crds]

    chart_yaml = chart / "Chart.yaml"
    writes[chart_yaml] = desired_chart_yaml(chart_yaml.read_text(), project_version(repo)).encode()

    rules = yaml.safe_load((chart / "rbac" / "rules.yaml").read_text())
    readme = chart / "README.md"
    writes[readme] = desired_readme(readme.read_text(), rules).encode()
    return writes, stale


def main(argv: list[str] | None = None, *, repo: Path = REPO, chart: Path = CHART) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would change")
    args = parser.parse_args(argv)

    writes, stale = plan(repo, chart)
    changed = [p for p, content in writes.items() if not p.exists() or p.read_bytes() != content]
    if args.check:
        for path in changed:
            print(f"out of date: {path.relative_to(repo)}", file=sys.stderr)
        for path in stale:
            print(f"stale (no longer generated): {path.relative_to(repo)}", file=sys.stderr)
        if changed or stale:
            print("run `make chart` (or python hack/sync_chart.py) and commit the result", file=sys.stderr)
            return 1
        return 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(writes[path])
        print(f"wrote {path.relative_to(repo)}")
    for path in stale:
        path.unlink()
        print(f"removed {path.relative_to(repo)}")
    if not desired_crds(repo):
        print("note: crds/ holds no CRDs yet (run `make crds`)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

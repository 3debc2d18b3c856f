"""The trainer contract: names, paths, models (pure)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from elastic_trainer import contract as c


def test_report_path_and_url() -> None:
    assert c.report_path("ns", "job") == "/v1/namespaces/ns/trainingjobs/job/reports"
    assert c.report_url("http://op:8080/", "ns", "job") == "http://op:8080/v1/namespaces/ns/trainingjobs/job/reports"
    assert c.REPORT_ROUTE.format(namespace="a", name="b") == c.report_path("a", "b")
    with pytest.raises(ValueError):
        c.report_path("ns", "a/b")
    with pytest.raises(ValueError):
        c.report_path("", "x")
    assert c.auth_header("t") == {"Authorization": "Bearer t"}


def test_report_roundtrip_and_state_compares_as_string() -> None:
    r = c.Report(namespace="ns", job="j", pod="p", generation=2, state="running", step=5, metrics={"loss": 0.5})
    again = c.Report.model_validate_json(r.model_dump_json())
    assert again == r
    assert again.state == "running" and str(again.state) == "running"
    body = json.loads(r.model_dump_json())
    assert body["state"] == "running" and body["last_checkpoint_step"] is None


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "dancing"},
        {"generation": -1},
        {"metrics": {"loss": float("nan")}},
        {"metrics": {"loss": float("inf")}},
        {"unknown": 1},
        {"pod": ""},
    ],
)
def test_report_rejects(bad: dict[str, object]) -> None:
    base: dict[str, object] = {"namespace": "ns", "job": "j", "pod": "p", "state": "running"}
    with pytest.raises(ValidationError):
        c.Report.model_validate({**base, **bad})


def test_directive_parsing_is_lenient_about_new_fields() -> None:
    d = c.Directive.model_validate(
        {"generation": 3, "action": "run", "nnodes": 2, "rdzv_endpoint": "h:1", "future_field": True}
    )
    assert d.runnable and d.rendezvous_id("uid") == "uid-g3"
    assert c.Directive(generation=3, action="run", nnodes=2, rdzv_endpoint="h:1", rdzv_id="x").rendezvous_id("u") == "x"
    assert not c.Directive(generation=1, action="run", nnodes=2).runnable  # no endpoint yet
    assert not c.Directive(generation=1, action="exit", nnodes=2, rdzv_endpoint="h:1").runnable
    with pytest.raises(ValidationError):
        c.Directive.model_validate({"generation": 1, "action": "jump"})


def test_build_worker_env_names_every_required_variable() -> None:
    env = c.build_worker_env(
        namespace="ns", name="j", uid="u", report_url="http://op", token_secret="s", token_key="token",
        checkpoint_dir="/ck", nproc_per_worker=2, extra={c.ENV_REPORT_INTERVAL_S: "2"},
    )  # fmt: skip
    names = [e["name"] for e in env]
    assert {s.name for s in c.WORKER_ENV if s.required} <= set(names)
    assert len(names) == len(set(names))
    token = next(e for e in env if e["name"] == c.ENV_TOKEN)
    assert token["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "token"}
    assert all(n.startswith("ELASTIC_") for n in names)
    with pytest.raises(ValueError):
        c.build_worker_env(
            namespace="ns", name="j", uid="u", report_url="u", token_secret="s", token_key="k", checkpoint_dir="/c",
            extra={"PATH": "/x"},
        )  # fmt: skip


def test_every_env_constant_is_distinct_and_prefixed() -> None:
    values = [v for k, v in vars(c).items() if k.startswith("ENV_")]
    assert len(values) == len(set(values)) and all(v.startswith("ELASTIC_") for v in values)
    assert set(c.DEFAULTS) <= set(values)


def test_contract_imports_no_torch() -> None:
    code = (
        "import sys, elastic_trainer.contract\n"
        "print(any(m.split('.')[0] in ('torch', 'kopf', 'elastic_operator') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

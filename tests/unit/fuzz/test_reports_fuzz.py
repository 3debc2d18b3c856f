"""Fuzz the report endpoint: the real aiohttp app on a real socket (a thread with its own event loop), raw HTTP.

Property: every request that is not a valid report with the job's token gets a 4xx with a JSON body whose `error`
says what is wrong (and, for a malformed report, which fields); never a 5xx, never a hang. The server stays up:
a valid report afterwards still gets its directive. A report the endpoint accepts holds only numbers the operator
can write into status (finite, within int64).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from elastic_operator.metrics import OperatorMetrics
from elastic_operator.reports.server import MAX_BODY, ReportStore, build_app, serve
from elastic_operator.reports.tokens import job_token
from elastic_trainer import contract
from tests.unit.fuzz.bad_json import INT64_MAX, json_values, mutations
from tests.unit.fuzz.test_models_fuzz import FUZZ

KEY = b"fuzz-key"
UID = "uid-good"
TOKEN = job_token(KEY, UID)
PATH = contract.report_path("ns", "good")
VALID: dict[str, Any] = {
    "namespace": "ns",
    "job": "good",
    "pod": "good-w0",
    "generation": 1,
    "state": "running",
    "step": 10,
    "epoch": 1,
    "samples_per_s": 12.5,
    "world_size": 2,
    "metrics": {"loss": 0.5},
    "last_checkpoint_step": 5,
}


class ReportServer:
    """The report app on 127.0.0.1:<free port>, served from a thread running its own event loop."""

    def __init__(self) -> None:
        self.store = ReportStore()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        app = build_app(
            self.store,
            KEY,
            lambda ns, name: UID if (ns, name) == ("ns", "good") else None,
            lambda ns, name, pod: contract.Directive(generation=1, action=contract.Action.RUN, nnodes=2),
            OperatorMetrics(),
            lambda: None,
        )
        self.runner, self.port = await serve(app, "127.0.0.1", 0)

    def __enter__(self) -> ReportServer:
        self.thread.start()
        assert self.ready.wait(30), "report server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """One request on a fresh connection; a hang fails the test (socket timeout)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ReportServer]:
    with ReportServer() as s:
        yield s


def valid_report_is_answered(server: ReportServer) -> None:
    status, ctype, body = server.send("POST", PATH, json.dumps(VALID).encode(), auth(TOKEN))
    assert status == 200 and ctype.startswith("application/json"), (status, body)
    assert contract.Directive.model_validate_json(body).generation == 1


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def assert_clear_error(status: int, ctype: str, body: bytes) -> dict[str, Any]:
    assert 400 <= status < 500, (status, body[:300])
    assert ctype.startswith("application/json"), (status, ctype, body[:300])
    answer = json.loads(body)
    assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
    return answer


def assert_storable(report: contract.Report) -> None:
    """What the operator may put into status from this report: finite numbers, integers within int64."""
    for value in (report.generation, report.step, report.epoch, report.world_size, report.last_checkpoint_step or 0):
        assert 0 <= value <= INT64_MAX
    for number in (report.samples_per_s, report.timestamp, *report.metrics.values()):
        assert math.isfinite(number)


def encode(value: Any) -> bytes:
    """JSON as a careless writer would produce it: NaN and Infinity as bare words, lone surrogates escaped."""
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    mutations(VALID).map(encode),
    json_values().map(encode),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b'{"step": 1e999}',
            b"\xff\xfe",
            b"x" * (MAX_BODY + 10),
            encode({**VALID, "metrics": {"loss": "x" * (MAX_BODY - 100)}}),
            encode({**VALID, "step": 10**30}),
            encode({**VALID, "samples_per_s": float("inf")}),
            encode({**VALID, "timestamp": float("nan")}),
            encode({**VALID, "metrics": "@"}).replace(b'"@"', b"[" * 3000 + b"]" * 3000),
            b"[" * 100_000 + b"]" * 100_000,  # deeper than any JSON parser's recursion
        ]
    ),
)
headers = st.one_of(
    st.just(auth(TOKEN)),
    st.sampled_from(
        [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {TOKEN}"}]
    ),
    st.text(st.characters(max_codepoint=255, exclude_categories=("Cc",)), max_size=80).map(
        lambda t: {"Authorization": f"Bearer {t}"}
    ),
    st.just({"Authorization": f"Bearer {TOKEN.upper()}"}),
    st.just({"Authorization": f"Bearer {TOKEN} "}),
)
paths = st.one_of(
    st.just(PATH),
    st.sampled_from(
        [
            contract.report_path("ns", "other"),
            contract.report_path("other", "good"),
            "/v1/namespaces/ns/trainingjobs/good",
            "/",
            "/healthz/x",
            PATH + "/x",
            "/v1/namespaces/%00/trainingjobs/%ff/reports",
            "/" + "a" * 5000,
        ]
    ),
)
methods = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"])


@settings(FUZZ, max_examples=200)
@given(method=methods, path=paths, body=bodies, head=headers)
def test_bad_requests_get_a_clear_4xx_and_the_server_stays_up(
    server: ReportServer, method: str, path: str, body: bytes, head: dict[str, str]
) -> None:
    status, ctype, answer = server.send(method, path, body, head)
    if status == 200:
        assert (method, path, head) == ("POST", PATH, auth(TOKEN)), (method, path, head)
        report = server.store.latest(("ns", "good"))
        assert report, "an accepted report is stored"
        for stored in report.values():
            assert_storable(stored.report)
        return
    error = assert_clear_error(status, ctype, answer)
    if status == 400 and "fields" in error:
        assert error["fields"] and all(f["field"] and f["message"] for f in error["fields"]), error


def test_after_the_fuzzing_a_valid_report_still_gets_its_directive(server: ReportServer) -> None:
    valid_report_is_answered(server)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"step": 10**30}, "step"),
        ({"generation": 2**64}, "generation"),
        ({"samples_per_s": float("inf")}, "samples_per_s"),
        ({"timestamp": float("nan")}, "timestamp"),
        ({"last_checkpoint_step": INT64_MAX + 1}, "last_checkpoint_step"),
    ],
)
def test_regression_numbers_status_cannot_hold_are_refused_naming_the_field(
    server: ReportServer, change: dict[str, Any], field: str
) -> None:
    """Accepted before: an infinite throughput or a step beyond int64 went into status.progress, the API server
    refused every status patch of the job from then on (and the throughput curve held infinity)."""
    status, ctype, body = server.send("POST", PATH, encode({**VALID, "pod": "good-w9", **change}), auth(TOKEN))
    error = assert_clear_error(status, ctype, body)
    assert [f["field"] for f in error["fields"]] == [field], error


@pytest.mark.parametrize(("method", "path"), [("GET", PATH), ("POST", "/nope"), ("PUT", PATH)])
def test_regression_unknown_paths_and_methods_answer_json(server: ReportServer, method: str, path: str) -> None:
    """aiohttp answered these with text/plain: a client parsing the answer as JSON got a decode error instead."""
    status, ctype, body = server.send(method, path, b"{}", auth(TOKEN))
    assert status in (404, 405)
    assert_clear_error(status, ctype, body)


def test_regression_a_token_with_non_ascii_characters_is_unauthorized_not_a_crash(server: ReportServer) -> None:
    """hmac.compare_digest raised TypeError on a str with non-ASCII characters: the endpoint answered 500."""
    headers = {"Authorization": "Bearer " + "é" * 64, "Content-Type": "application/json"}
    status, ctype, body = server.send("POST", PATH, json.dumps(VALID).encode(), headers)
    assert status == 401 and assert_clear_error(status, ctype, body)["error"] == "unauthorized"


@pytest.mark.parametrize(
    "progress",
    [
        {"step": 10**30, "epoch": -1, "samples_per_s": float("inf"), "world_size": 2**64},
        {"step": 3, "samples_per_s": float("nan")},
    ],
)
def test_the_launcher_reports_what_the_endpoint_accepts_whatever_the_training_code_says(
    tmp_path: Path, progress: dict[str, Any]
) -> None:
    """The endpoint refuses non-finite throughput and counters beyond 2**53 now; the launcher must not build such
    a report (it would be refused every interval) from what user training code passes to report()."""
    from elastic_trainer.launcher import Launcher, LauncherConfig

    cfg = LauncherConfig("ns", "good", UID, "good-w0", "http://x", TOKEN, str(tmp_path), work_dir=str(tmp_path))
    launcher = Launcher(cfg, ["python", "-m", "m"], client=object())  # type: ignore[arg-type]
    launcher._set_state(contract.TrainerState.RUNNING)
    launcher.progress = contract.Progress(**progress)
    report = contract.Report.model_validate_json(launcher.build_report().model_dump_json())
    assert_storable(report)

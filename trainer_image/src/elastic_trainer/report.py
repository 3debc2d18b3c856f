"""Reports: the training-side ``report()`` and the launcher's HTTP client.

Training code calls ``report(step=..., metrics={...})``; local rank 0 of each pod writes the latest progress to
``$ELASTIC_CONTROL_DIR/progress.json`` (atomically), and the pod's launcher forwards it with its next report. The
training processes never see the job's token. Pass job-wide values (all-reduced loss, evaluation accuracy), since
the operator may take them from any pod.

``ReportClient.post(report)`` is the launcher's side of the HTTP contract (stdlib only): it POSTs the Report and
returns the Directive the operator answers with.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from elastic_trainer import contract


def report(
    *,
    step: int,
    epoch: int = 0,
    samples_per_s: float = 0.0,
    metrics: Mapping[str, float] | None = None,
    last_checkpoint_step: int | None = None,
    world_size: int | None = None,
    remaining_samples: int | None = None,
) -> bool:
    """Publish progress for this pod's launcher. Cheap; call it every step or every few. Returns whether written
    (only local rank 0 inside a launcher writes). `remaining_samples` (epochs left x dataset size, when known)
    lets the operator skip rescales that would not pay off before training ends."""
    d = os.environ.get(contract.ENV_CONTROL_DIR)
    if not d or os.environ.get("LOCAL_RANK", "0") != "0":
        return False
    progress = contract.Progress(
        generation=int(os.environ.get(contract.ENV_GENERATION, "0")),
        step=step,
        epoch=epoch,
        samples_per_s=samples_per_s,
        world_size=world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1")),
        metrics=dict(metrics or {}),
        last_checkpoint_step=last_checkpoint_step,
        remaining_samples=remaining_samples,
        timestamp=time.time(),
    )
    path = os.path.join(d, contract.CONTROL_PROGRESS_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(progress.model_dump_json())
    os.replace(tmp, path)
    return True


def read_progress(control_dir: str | os.PathLike[str]) -> contract.Progress | None:
    try:
        with open(os.path.join(control_dir, contract.CONTROL_PROGRESS_FILE)) as f:
            return contract.Progress.model_validate_json(f.read())
    except (OSError, ValueError):
        return None


class ReportError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ReportClient:
    def __init__(self, base_url: str, namespace: str, name: str, token: str, timeout_s: float = 5.0) -> None:
        self.url = contract.report_url(base_url, namespace, name)
        self.token = token
        self.timeout_s = timeout_s

    def post(self, r: contract.Report) -> contract.Directive:
        req = urllib.request.Request(
            self.url,
            data=r.model_dump_json().encode(),
            method="POST",
            headers={"Content-Type": "application/json", **contract.auth_header(self.token)},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            raise ReportError(f"report rejected: HTTP {exc.code}: {detail}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ReportError(f"report endpoint unreachable: {exc}") from exc
        try:
            return contract.Directive.model_validate_json(body)
        except ValueError as exc:
            raise ReportError(f"malformed directive: {json.dumps(body[:200].decode(errors='replace'))}") from exc

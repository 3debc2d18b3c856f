"""`elastic-operator`: run the operator (kopf) with settings from flags or ELASTIC_OPERATOR_* variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import kopf

from elastic_operator.config import OperatorSettings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="elastic-operator", description=__doc__)
    for name, field in OperatorSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name == "namespaces":
            p.add_argument(flag, action="append", help=field.description)
        elif field.annotation is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=field.description)
        else:
            p.add_argument(flag, help=field.description)
    p.add_argument(
        "--token-key-file",
        help="File holding the key that signs per-job report tokens "
        "(else $ELASTIC_OPERATOR_TOKEN_KEY; else a random key, which a restart would invalidate).",
    )
    p.add_argument("--log-level", default=os.environ.get("ELASTIC_OPERATOR_LOG_LEVEL", "INFO"))
    return p


def load_settings(argv: list[str] | None = None) -> tuple[OperatorSettings, bytes, str]:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in OperatorSettings.model_fields if getattr(args, name, None) is not None
    }
    settings = OperatorSettings(**overrides)
    if args.token_key_file:
        key = Path(args.token_key_file).read_bytes().strip()
    elif os.environ.get("ELASTIC_OPERATOR_TOKEN_KEY"):
        key = os.environ["ELASTIC_OPERATOR_TOKEN_KEY"].encode()
    else:
        logging.getLogger("elastic_operator").warning(
            "no token key configured: using a random one; trainer tokens change if the operator restarts"
        )
        key = secrets.token_bytes(32)
    return settings, key, str(args.log_level)


async def run(settings: OperatorSettings, token_key: bytes, stop: asyncio.Event | None = None) -> None:
    from elastic_operator import handlers  # registers the handlers with kopf
    from elastic_operator.handlers.context import OperatorContext

    _ = handlers
    ctx = OperatorContext(settings=settings, token_key=token_key)
    await kopf.operator(
        # cluster-wide, or only the listed namespaces (then a namespaced Role suffices; see docs/operations.md)
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.standalone,
        memo=kopf.Memo(ctx=ctx),
        stop_flag=stop,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
    )


def main(argv: list[str] | None = None) -> int:
    settings, key, level = load_settings(argv)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(max(logging.getLevelName(level), logging.INFO))
    asyncio.run(run(settings, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())

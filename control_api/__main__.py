"""`python -m control_api` (what `jobyard api` runs): serve the control API with uvicorn."""

from __future__ import annotations

# First, before any module imports structlog or redis-py: they load without optional packages the
# farm does not use (core/platform/lean_imports.py).
import core.platform.lean_imports  # noqa: F401

# isort: split

import argparse

import uvicorn

from core.platform.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="jobyard api")
    parser.add_argument("--host", default=settings.api_host)
    parser.add_argument("--port", type=int, default=settings.api_port)
    parser.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    args = parser.parse_args(argv)
    uvicorn.run(
        "control_api.app:create_served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,  # our structlog set-up handles uvicorn's loggers too
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()

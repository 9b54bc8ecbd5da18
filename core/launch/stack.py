"""`jobyard up`: embedded services when no URLs are given, migrations, an admin key, then the farm."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click
import structlog

from core.launch.local import LocalServices, admin_key_line, ensure_admin_key, ensure_local_data_key
from core.launch.roles import queues_except, service_env, wait_for_http, worker_argv
from core.launch.supervisor import Child, Supervisor
from core.platform.logs import configure_logging, flush_logs
from core.platform.settings import Settings

log = structlog.get_logger(__name__)


def run_stack(settings: Settings) -> int:
    configure_logging(settings, process="up")
    home = settings.home_path
    services = LocalServices.for_settings(settings)
    supervisor: Supervisor | None = None
    stop = _StopFlag()
    signal.signal(signal.SIGINT, stop.set)
    signal.signal(signal.SIGTERM, stop.set)
    try:
        # Children find the data key as this process did: JOBYARD_DATA_KEY, else the home's file.
        settings = ensure_local_data_key(settings, home)
        settings = services.start(settings)
        from core.platform.migrate import upgrade

        upgrade(settings)
        admin_key = ensure_admin_key(settings, home)
        model_line = _embedding_model_line(settings)
        env = {**os.environ, **service_env(settings)}
        supervisor = Supervisor(farm_children(settings), env, settings.shutdown_timeout_s)
        stop.supervisor = supervisor
        supervisor.start()
        base = f"http://{settings.api_host}:{settings.api_port}"
        api = supervisor.children[0]
        if not wait_for_http(f"{base}/healthz", 60, alive=api.alive) and not stop.requested:
            log.error("api_did_not_start", url=base)
        _banner(base, admin_key, home, model_line)
        if not stop.requested:
            supervisor.watch()
        return 0
    finally:
        if supervisor is not None:
            # No new work first (API, scheduler), then let workers finish what they hold.
            supervisor.stop([["api", "scheduler"], ["worker", "worker_embeddings"]])
        services.stop()
        log.info("jobyard_stopped")


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.supervisor: Supervisor | None = None

    def set(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.supervisor is not None:
            self.supervisor.request_stop()


def farm_children(settings: Settings) -> list[Child]:
    from core.embeddings.embed import EMBEDDINGS_QUEUE

    py = sys.executable
    children = [
        Child(
            "api", [py, "-m", "control_api", "--host", settings.api_host, "--port", str(settings.api_port)]
        ),
    ]
    # Embedding jobs get a worker of their own, the only process that imports torch and holds the
    # model; the other worker consumes every other queue. One process: torch already spreads one
    # model call over every core, and each process would hold its own copy of the model.
    queues = settings.worker_queues or queues_except(settings, ())
    light = queues_except(settings, (EMBEDDINGS_QUEUE,), queues)
    if light:
        worker = worker_argv(
            settings.worker_processes, settings.worker_threads, light, settings.worker_shutdown_timeout_s
        )
        children.append(Child("worker", worker))
    if EMBEDDINGS_QUEUE in queues:
        embeddings = worker_argv(
            1, settings.embedding_worker_threads, (EMBEDDINGS_QUEUE,), settings.worker_shutdown_timeout_s
        )
        children.append(Child("worker_embeddings", embeddings))
    children.append(Child("scheduler", [py, "-m", "workers.scheduler"]))
    return children


#: The docs beside the code in a source checkout (an installed wheel has none: the banner says where).
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


def _embedding_model_line(settings: Settings) -> str | None:
    """Which model the embeddings worker serves and where its weights come from; also logged."""
    from core.embeddings.embed import EMBEDDINGS_QUEUE

    if settings.worker_queues and EMBEDDINGS_QUEUE not in settings.worker_queues:
        return None
    model = settings.embedding_model
    if settings.embedding_backend != "local":
        where = settings.embedding_inference_url or "Hugging Face Inference"
        log.info("embedding_model_served", model=model, backend=settings.embedding_backend, source=where)
        return f"{model} through {where}"
    from core.providers.embeddings import locate_model

    source = locate_model(model, settings.home_path)
    log.info(
        "embedding_model_served",
        model=model,
        backend="local",
        source=source.origin,
        path=str(source.path) if source.path else None,
        offline=source.offline,
    )
    return f"{model} from {source.origin}" + ("" if source.offline else " (needs the network once)")


def _banner(base: str, admin_key: str | None, home: Path, model_line: str | None) -> None:
    docs = (
        f"{DOCS_DIR} (the site: `make docs-serve`); API reference: {DOCS_DIR / 'reference' / 'api.md'}"
        if DOCS_DIR.is_dir()
        else "the docs/ folder of the Jobyard repository"
    )
    lines = [
        "",
        "Jobyard is up.",
        f"  API:        {base}   (OpenAPI: {base}/schema)",
        f"  Dashboard:  {base}/dashboard   (log in with the admin key)",
        f"  {admin_key_line(admin_key, home)}",
    ]
    if model_line:
        lines.append(f"  Embeddings: {model_line}")
    lines += [f"  Docs:       {docs}", "  Check a farm with `jobyard doctor`; stop with Ctrl-C.", ""]
    flush_logs()  # the lines logged so far come before the banner
    click.echo("\n".join(lines), err=True)

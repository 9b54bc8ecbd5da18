"""Chromium holds no secrets: every process of a scrape worker's browser (the browser, its zygotes,
renderers and utility processes) is read through /proc/<pid>/environ while a page is open, and none
holds a setting, key or token of the farm's, although the worker itself holds them all."""

from __future__ import annotations

import base64
import secrets
from dataclasses import fields
from pathlib import Path
from typing import Any

import psutil
from litestar.testing import TestClient

from core.platform.settings import Settings
from core.providers.browser import PASSED_ENV
from tests.fakes.site import FakeSite
from tests.integration.conftest import Farm, JobWaiter
from tests.integration.scrape.test_scrape import SITE_HOST, chromium_processes, enqueue, scrape_worker
from tests.services import settings_env, wait_for

#: The farm's secrets, as the worker gets them from its environment.
SECRET_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "JOBYARD_DATA_KEY",
    "OPENAI_API_KEY",
    "WHATSAPP_TOKEN",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
    "JOBYARD_LLM_PROVIDERS",
)
#: Names Chromium may share with the worker besides PASSED_ENV: its private home (other values), and
#: PWD, which the shell script Debian puts in front of Chromium sets to the working directory.
OWN_NAMES = {"HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "PWD"}


def _distinctive_secrets() -> dict[str, Any]:
    """Secret settings with values that cannot occur by chance in an environment."""
    token = lambda name: f"{name}-{secrets.token_hex(12)}"  # noqa: E731
    return {
        "openai_api_key": "sk-" + token("openai"),
        "whatsapp_token": token("whatsapp-token"),
        "whatsapp_app_secret": token("whatsapp-app-secret"),
        "whatsapp_verify_token": token("whatsapp-verify"),
        "llm_providers": f'[{{"name": "x", "base_url": "http://127.0.0.1:9", "api_key": "{token("llm")}"}}]',
    }


def _environ(proc: psutil.Process) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()  # as a user of the machine would read it
    except (FileNotFoundError, ProcessLookupError):
        return None  # it exited meanwhile
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def test_no_chromium_process_of_a_scrape_worker_holds_a_farm_secret(
    api: TestClient[Any], farm: Farm, wait_job: JobWaiter, site: FakeSite
) -> None:
    worker = scrape_worker(farm, threads=1, **_distinctive_secrets())
    settings: Settings = farm.settings
    env = settings_env(settings)
    farm_names = {f.metadata["env"] for f in fields(Settings)}
    secret_values = {name: env[name] for name in SECRET_NAMES}
    assert all(len(value) >= 16 for value in secret_values.values()), secret_values.keys()
    # The worker itself holds every one of them: the check below could fail.
    worker_env = _environ(psutil.Process(worker.proc.pid))
    assert worker_env is not None
    assert {name: worker_env.get(name) for name in secret_values} == secret_values
    assert base64.b64decode(secret_values["JOBYARD_DATA_KEY"])

    # A page that hangs keeps its renderer alive while the browser's processes are read.
    hang = enqueue(api, {"url": f"http://{SITE_HOST}:{site.port}/hang", "timeout_s": 8}, max_retries=0)
    seen: dict[int, tuple[str, dict[str, str]]] = {}

    def renderer_seen() -> bool:
        for proc in chromium_processes(worker.proc.pid):
            environ = _environ(proc)
            # Read again at every look: a renderer forked by the zygote shows the zygote's command line
            # for a moment before it names itself --type=renderer.
            if environ is not None:
                try:
                    seen[proc.pid] = (" ".join(proc.cmdline()), environ)
                except psutil.NoSuchProcess:
                    continue
        return any("--type=renderer" in cmdline for cmdline, _ in seen.values())

    wait_for(renderer_seen, timeout=30, interval=0.1, what="a renderer of the hanging page")
    kinds = {next((a for a in cmd.split() if a.startswith("--type=")), "browser") for cmd, _ in seen.values()}
    assert {"browser", "--type=renderer"} <= kinds, kinds

    for pid, (cmdline, environ) in seen.items():
        raw = "\0".join(f"{name}={value}" for name, value in environ.items())
        leaked = {
            name: value[:12] + "..."
            for name, value in secret_values.items()
            if value in raw or value in cmdline
        }
        assert leaked == {}, f"process {pid} ({cmdline[:80]}) holds {leaked}"
        assert not set(environ) & farm_names, (pid, sorted(environ))
        # Nothing else of the worker's environment either (its virtualenv, certificates, paths...).
        inherited = set(environ) & set(worker_env)
        assert inherited <= set(PASSED_ENV) | OWN_NAMES, (pid, sorted(inherited))
        if "HOME" in environ:  # a zygote's children write their process title over it
            assert "jobyard-chromium-" in environ["HOME"] and environ["HOME"] != worker_env.get("HOME")

    assert wait_job(hang, "dead", timeout=30)["error"]["code"] == "scrape_timeout"

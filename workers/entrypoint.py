"""What the `dramatiq` CLI loads in each worker process (`jobyard worker` starts it).

The Dramatiq CLI imports a module and takes the broker it defines, so this module builds the
broker when imported. Nothing else imports it: importing it is starting a worker process.
"""

from __future__ import annotations

import importlib

import dramatiq
from dramatiq.middleware import ShutdownNotifications, TimeLimit

from core.broker import build_broker
from core.logs import configure_logging
from core.settings import get_settings
from workers.middleware import JobLifecycle

#: Modules with the built-in handlers; JOBYARD_JOB_MODULES adds a deployment's own.
BUILTIN_HANDLER_MODULES = (
    "workers.unread",
    "workers.whatsapp",
    "workers.ai",
    "workers.embeddings",
    "workers.scrape",
)


def boot() -> dramatiq.Broker:
    from core.jobs import load_job_modules
    from workers.embeddings import EmbeddingModel
    from workers.handlers import declare_actors
    from workers.scrape import ScrapeBrowser

    settings = get_settings()
    configure_logging(settings, process="worker")
    load_job_modules(settings)
    for name in BUILTIN_HANDLER_MODULES:
        importlib.import_module(name)
    # Retries are decided by JobLifecycle and wait in Postgres, so Dramatiq's Retries is left out.
    # EmbeddingModel loads the model, and ScrapeBrowser launches Chromium, at boot, each only in processes
    # that consume its queue.
    middleware = [
        TimeLimit(),
        ShutdownNotifications(),
        JobLifecycle(settings),
        EmbeddingModel(settings),
        ScrapeBrowser(settings),
    ]
    broker = build_broker(settings, middleware=middleware)
    declare_actors(broker, settings)
    dramatiq.set_broker(broker)
    return broker


broker = boot()

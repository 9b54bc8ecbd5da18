"""Every job type a farm knows: the built-in ones, then a deployment's own (JOBYARD_JOB_MODULES).

The API, the workers, the scheduler and the CLI call ``load_job_types`` at start; each type declares
itself with ``@job_type`` when its module is imported (core/engine/declare.py).
"""

from __future__ import annotations

import importlib

from core.engine.job_types import JobType, job_types
from core.platform.settings import Settings, get_settings


def load_job_types(settings: Settings | None = None) -> dict[str, JobType]:
    """Import the modules that declare job types, the built-ins first, and return every type."""
    # The built-in types, each declared in its feature package (ordinary imports).
    from core.assistant import reply  # noqa: F401
    from core.chats import ai_reply, unread  # noqa: F401
    from core.embeddings import embed  # noqa: F401
    from core.messaging import send  # noqa: F401
    from core.scrape import pages  # noqa: F401

    settings = settings or get_settings()
    for name in settings.job_modules:
        importlib.import_module(name)
    return job_types()

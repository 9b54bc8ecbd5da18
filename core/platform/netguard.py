"""Which addresses a scraped page or a tenant's LLM provider may reach: public ones, unless the host is on
the allow list.

The check is made on the addresses a name resolves to, never on the name: `localhost`, a name in
/etc/hosts or a public-looking name whose DNS answers 127.0.0.1 are all refused for what they resolve
to. Every address of a name must be public, so a DNS answer mixing a public and a private address is
refused too. The caller connects to an address it got from here (see core/providers/guard_proxy.py),
so a second lookup that answers differently (DNS rebinding) never decides where a connection goes.

Two callers: the scrape's browser, through core/providers/guard_proxy.py, and the HTTP clients of
tenants' own LLM providers (core/providers/guarded_http.py), which connect to the checked address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from core.errors import AddressRefused, NotResolved

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: NAT64's well-known prefix (RFC 6052): always /96, the IPv4 address in the last 32 bits.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): a network picks its own prefix inside it, of length 48, 56,
#: 64 or 96, and the IPv4 address sits at a different place in each (RFC 6052, section 2.2).
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
#: Where RFC 6052 puts the 32 bits of the IPv4 address for each prefix length: (start bit, bits) pieces,
#: bit 0 the most significant, skipping bits 64-71 (the "u" octet).
_NAT64_LAYOUTS = {
    48: ((48, 16), (72, 16)),
    56: ((56, 8), (72, 24)),
    64: ((72, 32),),
    96: ((96, 32),),
}
#: Ranges that are not globally reachable (IANA's special-purpose registries), checked besides
#: ``ipaddress``'s own flags: Python's tables differ between versions (3.11.7 calls 192.0.0.8 global).
NON_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/8",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
#: 0.0.0.0/8 ("this network") is not a destination any translator forwards to, and a /96 address
#: read with a shorter layout lands there (its bits 48-95 are zero).
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
#: Longest wait for a DNS answer; a name that takes longer is treated as not resolving.
RESOLVE_TIMEOUT_S = 10.0


def _bits(value: int, start: int, length: int) -> int:
    return (value >> (128 - start - length)) & ((1 << length) - 1)


def _nat64_local(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address a local-use NAT64 address can lead to, one per layout of RFC 6052."""
    value = int(address)
    found = []
    for length, pieces in _NAT64_LAYOUTS.items():
        v4 = 0
        for start, bits in pieces:
            v4 = (v4 << bits) | _bits(value, start, bits)
        candidate = ipaddress.IPv4Address(v4)
        if length != 96 and candidate in _THIS_NETWORK:
            continue  # not this layout: a translator using it would have nowhere to send it
        found.append(candidate)
    return found


def _embedded_v4(address: IPAddress) -> tuple[list[ipaddress.IPv4Address], bool]:
    """The IPv4 addresses a connection to ``address`` may end up at, and whether the IPv6 address
    itself is to be judged too (not for IPv4-mapped and NAT64, which are only a way of writing the
    IPv4 one)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [], True
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped], False
    if address in _NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)], False
    if address in _NAT64_LOCAL:
        return _nat64_local(address), False
    if address.sixtofour is not None:
        return [address.sixtofour], True
    if address.teredo is not None:
        return list(address.teredo), True  # the Teredo server and the client behind it
    return [], True


def _category(address: IPAddress) -> str | None:
    # Order matters only for the message: the most telling name first.
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live here)"
    if address.is_multicast:  # `is_global` is true for some multicast ranges
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address (it reaches this host)"
    if address.is_reserved:
        return "a reserved address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address (deprecated, but still routed privately)"
    if address.is_private:
        return "a private address"
    if not address.is_global or any(address in net for net in NON_GLOBAL if net.version == address.version):
        return "not a globally routable address"
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached, or None when it is public.

    An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo) is judged by every
    IPv4 address it may lead to: ``::ffff:127.0.0.1`` is loopback, although Python 3.11's
    ``ipaddress`` does not say so. 6to4 and Teredo addresses must be public themselves as well.
    """
    inner, judge_outer = _embedded_v4(address)
    for v4 in inner:
        reason = _category(v4)
        if reason:
            return f"{reason} ({v4}, inside {address})"
    return _category(address) if judge_outer else None


def normalize_host(host: str) -> str:
    """A host as URLs and the browser's proxy requests name it: lower case, no brackets or final dot,
    IDNA (punycode) for non-ASCII names."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    return host


def parse_address(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (``::1``, ``127.0.0.1``), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AllowEntry:
    #: A host name or IP literal, or ``*.domain`` for the domain and every name under it.
    pattern: str
    #: When set, the host is reached at this address and DNS is not asked.
    pinned: IPAddress | None = None

    def matches(self, host: str) -> bool:
        if self.pattern.startswith("*."):
            domain = self.pattern[2:]
            return host == domain or host.endswith("." + domain)
        return host == self.pattern


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts exempt from the address check (JOBYARD_SCRAPE_ALLOW_HOSTS, JOBYARD_LLM_ALLOW_HOSTS)."""

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> AllowList:
        """``host``, ``*.domain`` or ``host=address``; ValueError names a bad item."""
        entries = []
        for item in items:
            host, sep, pin = item.partition("=")
            pattern = normalize_host(host)
            name = pattern[2:] if pattern.startswith("*.") else pattern
            if not name or "*" in name:
                raise ValueError(f"{item!r}: expected a host, *.domain or host=address")
            pinned = None
            if sep:
                pinned = parse_address(pin.strip().strip("[]"))
                if pinned is None or pattern.startswith("*."):
                    raise ValueError(f"{item!r}: host=address needs one host and an IP address")
            entries.append(AllowEntry(pattern, pinned))
        return cls(tuple(entries))

    def match(self, host: str) -> AllowEntry | None:
        host = normalize_host(host)
        return next((e for e in self.entries if e.matches(host)), None)


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the operating system's resolver gives for ``host`` (getaddrinfo)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NotResolved(f"{host} does not resolve: {exc}") from None
    except TimeoutError:
        raise NotResolved(f"{host} did not resolve within {RESOLVE_TIMEOUT_S:.0f} s") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _judged(
    host: str, entry: AllowEntry | None, addresses: list[IPAddress], literal: IPAddress | None
) -> list[IPAddress]:
    if not addresses:
        raise NotResolved(f"{host} has no address")
    if entry is None:
        for address in addresses:
            reason = refusal(address)
            if reason is not None:
                raise AddressRefused(host, str(address), reason, literal=literal is not None)
    return addresses


def _without_lookup(host: str, allow: AllowList) -> tuple[str, AllowEntry | None, list[IPAddress] | None]:
    """The host as compared, its allow-list entry, and its addresses where no lookup is needed (a
    pinned host, an address literal: judged already); None where the name must be resolved."""
    host = normalize_host(host)
    entry = allow.match(host)
    if entry is not None and entry.pinned is not None:
        return host, entry, [entry.pinned]
    literal = parse_address(host)
    if literal is not None:
        return host, entry, _judged(host, entry, [literal], literal)
    return host, entry, None


def _looked_up(host: str, entry: AllowEntry | None, answers: list[str]) -> list[IPAddress]:
    """The addresses a lookup of ``host`` answered, judged."""
    return _judged(host, entry, [a for a in (parse_address(x) for x in answers) if a is not None], None)


async def checked_addresses(
    host: str, port: int, allow: AllowList, resolve: Resolver = system_resolve
) -> list[IPAddress]:
    """The addresses to connect to for ``host``; AddressRefused if one is not public and the host is not
    allow-listed, NotResolved if it has none."""
    host, entry, known = _without_lookup(host, allow)
    if known is not None:
        return known
    return _looked_up(host, entry, await resolve(host, port))


SyncResolver = Callable[[str, int], list[str]]


def system_resolve_sync(host: str, port: int) -> list[str]:
    """As system_resolve, for a thread without an event loop (a worker's HTTP client)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise NotResolved(f"{host} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses_sync(
    host: str, port: int, allow: AllowList, resolve: SyncResolver = system_resolve_sync
) -> list[IPAddress]:
    """checked_addresses for synchronous callers: the same rule, the same errors."""
    host, entry, known = _without_lookup(host, allow)
    if known is not None:
        return known
    return _looked_up(host, entry, resolve(host, port))

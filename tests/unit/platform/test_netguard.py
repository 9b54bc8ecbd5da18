"""The SSRF guard's address check (core/platform/netguard.py): which addresses are refused, the allow
list, names checked by every address they resolve to, and property tests (hypothesis) of every
spelling of a non-public address."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from core.errors import AddressRefused
from core.platform.netguard import AllowList, NotResolved, Resolver, checked_addresses, refusal
from tests.properties import PROPERTY

#: IPv4 ranges no scraped page may reach, whatever spelling points at them.
NON_PUBLIC_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def non_public_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    net = draw(st.sampled_from(NON_PUBLIC_V4))
    return ipaddress.IPv4Address(int(net.network_address) + draw(st.integers(0, net.num_addresses - 1)))


@st.composite
def public_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    address = ipaddress.IPv4Address(draw(st.integers(0x01000000, 0xDFFFFFFF)))
    assume(address.is_global and not any(address in net for net in NON_PUBLIC_V4))
    return address


THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _v6(value: int) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(value & ((1 << 128) - 1))


def _nat64_local(v4: ipaddress.IPv4Address, layout: int, noise: int) -> ipaddress.IPv6Address:
    """``v4`` in the local-use NAT64 prefix with RFC 6052's layout for ``layout``, the bits RFC 6052
    leaves to the network (prefix tail, suffix) filled with ``noise``."""
    prefix = int(ipaddress.IPv6Address("64:ff9b:1::"))
    value = int(v4)
    if layout == 96:
        return _v6(prefix | (noise & ((1 << 48) - 1)) << 32 | value)
    pieces = {48: ((48, 16), (72, 16)), 56: ((56, 8), (72, 24)), 64: ((72, 32),)}[layout]
    out, consumed = prefix, 0
    for start, bits in pieces:
        chunk = (value >> (32 - consumed - bits)) & ((1 << bits) - 1)
        out |= chunk << (128 - start - bits)
        consumed += bits
    suffix_start = 72 + sum(b for s, b in pieces if s >= 72)
    out |= noise & ((1 << (128 - suffix_start)) - 1)
    return _v6(out)


def v6_spellings(v4: ipaddress.IPv4Address, noise: int) -> list[ipaddress.IPv6Address]:
    """Ways of writing an IPv6 address whose connection ends at ``v4``."""
    value = int(v4)
    return [
        ipaddress.IPv6Address(f"::ffff:{v4}"),  # IPv4-mapped
        _v6(0xFFFF << 32 | value),  # the same, as an integer
        ipaddress.IPv6Address(f"64:ff9b::{v4}"),  # NAT64, well-known prefix
        _v6(0x2002 << 112 | value << 80 | (noise & ((1 << 80) - 1))),  # 6to4
        # Teredo: server anywhere, client obfuscated (bits flipped) in the last 32 bits
        _v6(
            0x20010000 << 96
            | (noise & 0xFFFFFFFF) << 64
            | (noise >> 32 & 0xFFFF) << 32
            | (value ^ 0xFFFFFFFF)
        ),
        _nat64_local(v4, 96, noise),
        # Read with a shorter layout, a /96 address lands in 0.0.0.0/8, which no translator forwards
        # to: the guard skips that reading (core/platform/netguard.py), so 0.0.0.0/8 is left out here.
        *(_nat64_local(v4, layout, noise) for layout in (48, 56, 64) if v4 not in THIS_NETWORK),
    ]


@PROPERTY
@given(v4=non_public_v4(), noise=st.integers(0, (1 << 80) - 1))
@example(v4=ipaddress.IPv4Address("10.0.0.1"), noise=0x0808_0808)  # found: a /48 NAT64 address read as /96
@example(v4=ipaddress.IPv4Address("169.254.169.254"), noise=0)
@example(v4=ipaddress.IPv4Address("192.0.0.8"), noise=0)  # found: Python 3.11.7 calls it global
def test_every_spelling_of_a_non_public_ipv4_address_is_refused(
    v4: ipaddress.IPv4Address, noise: int
) -> None:
    assert refusal(v4) is not None
    for address in v6_spellings(v4, noise):
        assert refusal(address) is not None, (address, v4)


@PROPERTY
@given(v4=public_v4())
def test_public_ipv4_addresses_pass_however_a_translator_writes_them(v4: ipaddress.IPv4Address) -> None:
    for address in (
        v4,
        ipaddress.IPv6Address(f"::ffff:{v4}"),
        ipaddress.IPv6Address(f"64:ff9b::{v4}"),
        _nat64_local(v4, 96, 0),  # the local-use prefix as DNS64 usually synthesises it
    ):
        assert refusal(address) is None, (address, refusal(address))


@PROPERTY
@given(value=st.integers(0, (1 << 128) - 1))
def test_an_ipv6_address_python_calls_non_global_is_refused_unless_it_only_wraps_ipv4(value: int) -> None:
    address = ipaddress.IPv6Address(value)
    wraps_v4 = address.ipv4_mapped is not None or address in ipaddress.IPv6Network("64:ff9b::/32")
    reason = refusal(address)  # never raises
    if not wraps_v4 and not address.is_global:
        assert reason is not None, address
    if address.is_site_local or address.is_link_local or address.is_loopback:
        assert reason is not None, address


def _text_spellings(v4: ipaddress.IPv4Address) -> list[str]:
    """How a URL may name ``v4`` in text: the C resolver (inet_aton) reads them all."""
    a, b, c, d = v4.packed
    value = int(v4)
    return [
        str(v4),
        str(value),  # 2130706433
        hex(value),  # 0x7f000001
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",  # octal parts
        f"{a}.{(b << 16) | (c << 8) | d}",  # 127.1 style
        f"{a}.{b}.{(c << 8) | d}",
        f"{v4}.",  # final dot
        f"[::ffff:{v4}]",
        f"[::FFFF:{hex(value >> 16)[2:]}:{hex(value & 0xFFFF)[2:]}]",
        f"[64:ff9b::{v4}]",
    ]


@settings(max_examples=60, deadline=None)
@given(v4=non_public_v4())
@example(v4=ipaddress.IPv4Address("127.0.0.1"))
def test_checked_addresses_refuses_every_text_spelling_of_a_non_public_address(
    v4: ipaddress.IPv4Address,
) -> None:
    for host in _text_spellings(v4):

        async def check(name: str = host) -> Any:
            return await checked_addresses(name, 80, AllowList())

        with pytest.raises(AddressRefused):  # the C resolver reads them all, so each is refused by address
            asyncio.run(check())


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("100.64.0.1", "not a globally routable"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),  # Python calls this one global
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a bind
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation ranges are not routable either
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: Python 3.11 does not call it loopback
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1, which Python calls global
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_the_allow_list_takes_hosts_domains_and_pins() -> None:
    allow = AllowList.parse(
        ["intranet.corp", "*.svc.local", "Shop.Example.com.=127.0.0.1", "10.0.0.5", "[::1]"]
    )
    assert allow.match("INTRANET.corp") is not None
    assert allow.match("a.b.svc.local") is not None and allow.match("svc.local") is not None
    assert allow.match("evilsvc.local") is None
    entry = allow.match("shop.example.com")
    assert entry is not None and entry.pinned == ipaddress.ip_address("127.0.0.1")
    assert allow.match("10.0.0.5") is not None and allow.match("::1") is not None
    assert allow.match("example.com") is None
    for bad in ["", "*.", "a*.b", "host=not-an-ip", "*.x.com=1.2.3.4"]:
        with pytest.raises(ValueError):
            AllowList.parse([bad])


def _resolver(answers: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise NotResolved(f"{host} does not resolve")
        return answers[host]

    return resolve


def test_names_are_checked_by_every_address_they_resolve_to() -> None:
    async def check() -> None:
        resolve = _resolver(
            {
                "public.example": ["93.184.216.34"],
                "rebind.example": ["93.184.216.34", "127.0.0.1"],  # one bad answer is enough
                "internal.example": ["10.0.0.7"],
            }
        )
        none = AllowList()
        assert await checked_addresses("public.example", 80, none, resolve) == [
            ipaddress.ip_address("93.184.216.34")
        ]
        with pytest.raises(
            AddressRefused, match=r"rebind\.example resolves to 127\.0\.0\.1, a loopback address"
        ):
            await checked_addresses("rebind.example", 80, none, resolve)
        with pytest.raises(AddressRefused, match="private"):
            await checked_addresses("internal.example", 80, none, resolve)
        with pytest.raises(AddressRefused, match=r"169\.254\.169\.254 is a link-local"):
            await checked_addresses("169.254.169.254", 80, none, resolve)
        with pytest.raises(NotResolved):
            await checked_addresses("nowhere.example", 80, none, resolve)
        # Allowed by name: any address; pinned: DNS is not even asked.
        allowed = AllowList.parse(["internal.example", "pinned.example=10.9.8.7"])
        assert await checked_addresses("internal.example", 80, allowed, resolve) == [
            ipaddress.ip_address("10.0.0.7")
        ]
        assert await checked_addresses("pinned.example", 80, allowed, resolve) == [
            ipaddress.ip_address("10.9.8.7")
        ]

    asyncio.run(check())


def test_localhost_is_refused_through_the_system_resolver() -> None:
    with pytest.raises(AddressRefused, match=r"localhost resolves to .*loopback"):
        asyncio.run(checked_addresses("localhost", 80, AllowList()))

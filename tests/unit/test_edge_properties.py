"""Property tests (hypothesis) for the parsers that stand between a hostile caller and the farm:
the SSRF guard's address check, the JSON depth scanner, the dead-letter payload merge patch (RFC
7386), the API key format, and the reading of X-Forwarded-For."""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from control_api.forwarded import TrustedProxies
from control_api.limits import json_depth_exceeds
from core.access.keys import KEY_PREFIX, well_formed
from core.engine.deadletters import merge_patch
from core.errors import AddressRefused
from core.platform.netguard import AllowList, checked_addresses, refusal

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the address guard -----------------------------------------------------------------------------

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


# -- the JSON depth scanner ------------------------------------------------------------------------

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('[]{}"\\,:ab é\n\u2028'), max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nested(levels: int, leaf: Any) -> Any:
    for i in range(levels):
        leaf = [leaf] if i % 2 else {"k[{": leaf}
    return leaf


@PROPERTY
@given(
    value=JSON_VALUES | st.builds(nested, st.integers(0, 40), JSON_LEAVES),
    limit=st.integers(0, 40),
    ensure_ascii=st.booleans(),
    indent=st.sampled_from([None, 0, 2]),
)
def test_the_depth_scanner_agrees_with_the_real_nesting_of_any_json(
    value: Any, limit: int, ensure_ascii: bool, indent: int | None
) -> None:
    body = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert json_depth_exceeds(body, limit) == (depth(value) > limit)


@PROPERTY
@given(body=st.binary(max_size=300), limit=st.integers(0, 8))
def test_the_depth_scanner_takes_any_bytes(body: bytes, limit: int) -> None:
    result = json_depth_exceeds(body, limit)  # never raises, on malformed input too
    brackets = body.count(b"[") + body.count(b"{")
    if brackets <= limit:
        assert result is False


def test_the_depth_scanner_is_linear_on_hostile_strings() -> None:
    # An unterminated string of escapes, a million brackets inside a string: each scanned once.
    for body in (b'"' + b"\\" * 1_000_001, b'["' + b"[" * 1_000_000 + b'"]', b"[" * 100_000):
        json_depth_exceeds(body, 32)
    assert json_depth_exceeds(b"[" * 33, 32) and not json_depth_exceeds(b'["' + b"[" * 100 + b'"]', 32)


# -- the dead-letter merge patch (RFC 7386) --------------------------------------------------------


def rfc7386(target: Any, patch: Any) -> Any:
    """The RFC's own pseudo-code, word for word."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        target = dict(target)
        for name, value in patch.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = rfc7386(target.get(name), value)
        return target
    return patch


def no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: no_nulls(v) for k, v in value.items() if v is not None}
    return value


def diff(source: Any, target: Any) -> Any:
    """A merge patch that turns ``source`` into ``target`` (which holds no null member)."""
    if not isinstance(source, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {k: None for k in source if k not in target}
    for k, v in target.items():
        if k not in source:
            patch[k] = v
        elif source[k] != v:
            patch[k] = diff(source[k], v)
    return patch


@PROPERTY
@given(target=JSON_VALUES, patch=JSON_VALUES)
def test_the_merge_patch_follows_rfc_7386_and_leaves_its_input_alone(target: Any, patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    result = merge_patch(target, patch)
    assert result == rfc7386(target, patch)
    assert (target, patch) == before  # neither input is changed
    assert merge_patch(result, patch) == result  # applying it twice changes nothing more


@PROPERTY
@given(source=JSON_VALUES, target=JSON_VALUES.map(no_nulls))
def test_a_merge_patch_made_from_two_documents_turns_one_into_the_other(source: Any, target: Any) -> None:
    assert merge_patch(source, diff(source, target)) == target


def test_merge_patch_examples_of_rfc_7386_appendix_a() -> None:
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, expected in cases:
        assert merge_patch(target, patch) == expected, (target, patch)


# -- API keys and forwarded addresses --------------------------------------------------------------


@PROPERTY
@given(text=st.text(max_size=60))
@example(text="jy_" + "A" * 32)
@example(text="jy_" + "A" * 32 + "\n")
@example(text="jy_" + "A" * 31 + "é")
def test_only_the_exact_shape_of_a_generated_key_passes_the_format_check(text: str) -> None:
    shaped = (
        text.startswith(KEY_PREFIX)
        and len(text) == 35
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in text[3:])
    )
    assert well_formed(text) == shaped


@PROPERTY
@given(
    forged=st.lists(st.text(max_size=20) | st.ip_addresses().map(str), max_size=5),
    client=st.ip_addresses(v=4).map(str),
    proxies=st.integers(0, 3),
)
def test_a_client_cannot_choose_its_address_through_x_forwarded_for(
    forged: list[str], client: str, proxies: int
) -> None:
    """Whatever a client writes in X-Forwarded-For, the address a chain of trusted proxies settles on
    is the one the first proxy saw: the client's own."""
    trusted = TrustedProxies.parse(["10.9.0.0/16"])
    assume(not trusted.trusts(client))
    chain = [f"10.9.0.{i + 1}" for i in range(proxies)]
    # The client sends its forgery; each proxy appends the address it got the request from.
    hops = [*forged, client, *chain[:-1]] if chain else forged
    peer = chain[-1] if chain else client
    header = ", ".join(hops) if hops else None
    assert trusted.client(peer, header) == str(ipaddress.ip_address(client))
    assert trusted.scheme(client, "http", "https") == "http"  # nor its scheme, unless a proxy sent it

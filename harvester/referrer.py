"""Which `Referer` header an image fetch sends, per the W3C Referrer Policy spec.

Input: a referrer policy token (or the raw `referrerpolicy` attribute / `<meta name=referrer>`
values it comes from), the page URL (the referrer source: the article's own URL, when known)
and the image URL (the request's current URL).
Output: the `Referer` header value (a string) or `None` for "send no Referer".

Pure functions, no I/O. Spec references (section numbers of the W3C Referrer Policy Editor's
Draft, https://w3c.github.io/webappsec-referrer-policy/):

- §3   Referrer policies: the token list, and "the default referrer policy is
       strict-origin-when-cross-origin".
- §8.3 Determine request's referrer: strip the source twice (full URL and origin), the
       4096-character rule, then one branch per policy.
- §8.4 Strip url for use as a referrer: no userinfo, no fragment; origin-only drops path+query.
- Secure Contexts §3.1/§3.2 (https://w3c.github.io/webappsec-secure-contexts/): "Is origin /
  url potentially trustworthy?", the downgrade test.
- HTML §2.3.x enumerated attributes and §4.8.x `referrerpolicy` content attribute; HTML
  §4.2.5.1 standard metadata name `referrer` (the `<meta name="referrer">` processing model,
  with its legacy-keyword table).
- URL Standard (https://url.spec.whatwg.org/) for parsing hosts, ports and paths, so origins
  compare and serialize the way a browser's would.

Redirects: the fetcher follows redirects by hand and computes the `Referer` of every hop with
this same function, passing the ORIGINAL page URL as `page_url` (the referrer source never
changes; Fetch "HTTP-redirect fetch" keeps request's referrer) and the hop's URL as `image_url`
(the request's current URL). So a redirect from an https image host to an http one loses the
Referer under the downgrade-sensitive policies, and a redirect back to the page's own origin
regains the full URL under `*-when-cross-origin` policies, exactly as in a browser.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urljoin

__all__ = [
    "DEFAULT_POLICY",
    "MAX_REFERRER_LENGTH",
    "POLICIES",
    "apply_override",
    "check_overrides",
    "effective_policy",
    "find_override",
    "is_potentially_trustworthy",
    "last_meta_policy",
    "parse_meta_referrer",
    "parse_policy_attribute",
    "referrer_for",
    "same_origin",
    "strip_url_for_referrer",
]

# §3 Referrer policies: the eight non-empty tokens (the empty string means "use the default").
POLICIES: frozenset[str] = frozenset(
    {
        "no-referrer",
        "no-referrer-when-downgrade",
        "same-origin",
        "origin",
        "strict-origin",
        "origin-when-cross-origin",
        "strict-origin-when-cross-origin",
        "unsafe-url",
    }
)
# §3: "The default referrer policy is "strict-origin-when-cross-origin"."
DEFAULT_POLICY = "strict-origin-when-cross-origin"
# §8.3 step 6: a referrerURL longer than this is replaced by referrerOrigin.
MAX_REFERRER_LENGTH = 4096

# HTML §4.2.5.1 (standard metadata name "referrer"), processing step 5: legacy keywords of
# `<meta name="referrer">` mapped to policy tokens. Current HTML maps `default` to "the default
# referrer policy", i.e. strict-origin-when-cross-origin (older drafts of the Referrer Policy
# spec mapped it to no-referrer-when-downgrade, the browsers' default at the time).
_LEGACY_META_KEYWORDS = {
    "never": "no-referrer",
    "default": DEFAULT_POLICY,
    "always": "unsafe-url",
    "origin-when-crossorigin": "origin-when-cross-origin",
}

_ASCII_WHITESPACE = "\t\n\x0c\r "  # Infra "ASCII whitespace"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SPECIAL_PORTS = {"http": 80, "https": 443}  # URL Standard "default port"
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


# ---------------------------------------------------------------------------------------------
# Parsing policy tokens (HTML)
# ---------------------------------------------------------------------------------------------


def _ascii_lower(value: str) -> str:
    # Infra "ASCII lowercase": only A-Z change. str.lower() would also fold non-ASCII letters,
    # and "ASCII case-insensitive" must not match e.g. a Kelvin sign against "k".
    return value.translate(_ASCII_LOWER)


def parse_policy_attribute(value: str | None) -> str | None:
    """The policy an `<img referrerpolicy=...>` value names, or None when it names none.

    HTML: `referrerpolicy` is an enumerated attribute whose keywords are the §3 tokens, matched
    ASCII case-insensitively; an empty, missing or invalid value maps to the empty-string
    state, i.e. "no policy of its own" (the document's policy applies), which is `None` here.
    Harvester also trims surrounding ASCII whitespace (`" origin "`), which a strict reading of
    enumerated attributes would reject: such values are authoring slips, and the author's
    intent is plain.
    """
    if value is None:
        return None
    token = _ascii_lower(value.strip(_ASCII_WHITESPACE))
    return token if token in POLICIES else None


def parse_meta_referrer(value: str | None) -> str | None:
    """The policy a `<meta name="referrer" content=...>` value sets, or None when it sets none.

    HTML §4.2.5.1 "referrer" metadata name, processing model:
      step 3: no content attribute, or the empty string -> return (no policy set);
      step 4: value converted to ASCII lowercase;
      step 5: legacy keywords mapped: never -> no-referrer, default -> the default referrer
              policy (strict-origin-when-cross-origin), always -> unsafe-url,
              origin-when-crossorigin -> origin-when-cross-origin;
      step 6: only a valid policy token changes the document's policy.
    Surrounding ASCII whitespace is trimmed, as for the attribute.
    """
    if value is None:
        return None
    token = _ascii_lower(value.strip(_ASCII_WHITESPACE))
    if not token:  # step 3
        return None
    token = _LEGACY_META_KEYWORDS.get(token, token)  # step 5
    return token if token in POLICIES else None  # step 6


def last_meta_policy(values: Iterable[str | None]) -> str | None:
    """The document policy after processing its `<meta name="referrer">` elements in order.

    Each meta element with a valid value sets the document's policy when it is inserted (HTML
    §4.2.5.1 step 6), and an invalid one leaves it unchanged, so the LAST VALID value wins.
    """
    policy: str | None = None
    for value in values:
        parsed = parse_meta_referrer(value)
        if parsed is not None:
            policy = parsed
    return policy


def effective_policy(attribute: str | None, meta: str | None, default: str | None) -> str:
    """The policy one image reference is fetched under.

    Precedence: a valid `<img referrerpolicy>` attribute (Fetch "main fetch": the request's
    own referrer policy) > the document's valid `<meta name=referrer>` policy (the policy
    container's referrer policy; `meta` may be a raw content value, legacy keywords allowed) >
    the configured default (a valid §3 token) > §3's default, strict-origin-when-cross-origin.
    Invalid or empty values at any level fall through to the next.
    """
    return (
        parse_policy_attribute(attribute)
        or parse_meta_referrer(meta)
        or parse_policy_attribute(default)
        or DEFAULT_POLICY
    )


def _policy_token(policy: str | None) -> str:
    if policy is None or not policy.strip(_ASCII_WHITESPACE):
        return DEFAULT_POLICY  # empty string: §3, the default referrer policy
    token = parse_policy_attribute(policy)
    if token is None:
        # A wrong token here is a caller's bug (effective_policy never returns one), and
        # guessing could leak page URLs a stricter intended policy would have withheld.
        raise ValueError(
            f"unknown referrer policy {policy!r}; expected one of {', '.join(sorted(POLICIES))}"
        )
    return token


# ---------------------------------------------------------------------------------------------
# URLs and origins (URL Standard, for http and https only)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HttpURL:
    """An http(s) URL after URL-Standard parsing, already without userinfo and fragment."""

    scheme: str  # "http" | "https"
    host: str  # serialized host: ASCII domain, dotted IPv4, or "[v6]"
    port: int | None  # None when absent or the scheme's default port
    path: str  # percent-encoded, dot segments resolved, starts with "/"
    query: str | None  # percent-encoded, without "?"; None when absent

    @property
    def origin(self) -> tuple[str, str, int | None]:
        # URL Standard "origin" of an http(s) URL: the tuple (scheme, host, port).
        return (self.scheme, self.host, self.port)

    def serialize_origin_only(self) -> str:
        # §8.4 with the origin-only flag: path and query null, so the URL serializer yields
        # "scheme://host[:port]/" (the trailing slash is what browsers send).
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host}{port}/"

    def serialize(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        query = f"?{self.query}" if self.query is not None else ""
        return f"{self.scheme}://{self.host}{port}{self.path}{query}"


_C0_CONTROL_OR_SPACE = "".join(chr(c) for c in range(0x21))
# URL Standard percent-encode sets (only the characters above C0 controls that matter here).
_PATH_ENCODE = frozenset(' "#<>?`{}')
_QUERY_ENCODE = frozenset(" \"#<>'")  # the "special-query percent-encode set"
# URL Standard "forbidden domain code point", less "%" (decoded before the check).
_FORBIDDEN_DOMAIN = frozenset("\x00\t\n\r #/:<>?@[\\]^|%\x7f") | frozenset(
    chr(c) for c in range(0x20)
)


def _percent_encode(text: str, encode_set: frozenset[str]) -> str:
    out = []
    for ch in text:
        if ch in encode_set or ord(ch) < 0x20 or ord(ch) > 0x7E:
            if 0xD800 <= ord(ch) <= 0xDFFF:
                ch = "\ufffd"  # a lone surrogate is encoded as U+FFFD (UTF-8 encode)
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def _parse_ipv4_number(part: str) -> int | None:
    # URL Standard "IPv4 number parser": 0x/0X hex, leading-0 octal, else decimal.
    radix = 10
    if len(part) >= 2 and part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) >= 2 and part[0] == "0":
        part, radix = part[1:], 8
    if part == "":
        return 0
    digits = {10: "0123456789", 8: "01234567", 16: "0123456789abcdefABCDEF"}[radix]
    if any(c not in digits for c in part):
        return None
    return int(part, radix)


def _ends_in_a_number(domain: str) -> bool:
    # URL Standard "ends in a number checker": such hosts are parsed as IPv4 (or invalid).
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last and all(c in "0123456789" for c in last):
        return True
    return _parse_ipv4_number(last) is not None and last[:2] in ("0x", "0X")


def _parse_ipv4(domain: str) -> str | None:
    # URL Standard "IPv4 parser"; returns the dotted serialization, None on failure.
    parts = domain.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4 or any(p == "" for p in parts):
        return None
    numbers = [_parse_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    nums = [n for n in numbers if n is not None]
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 256 ** (5 - len(nums)):
        return None
    address = nums[-1]
    for i, n in enumerate(nums[:-1]):
        address += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(address))


def _serialize_ipv6(text: str) -> str | None:
    # URL Standard "IPv6 serializer": lowercase hex pieces, the first longest run (>= 2) of zero
    # pieces compressed to "::"; embedded IPv4 is written as hex like every other piece.
    if "%" in text:  # zone identifiers are not allowed in URLs
        return None
    try:
        value = int(ipaddress.IPv6Address(text))
    except ValueError:
        return None
    pieces = [(value >> (16 * (7 - i))) & 0xFFFF for i in range(8)]
    best_start, best_len, i = -1, 1, 0
    while i < 8:
        if pieces[i] == 0:
            j = i
            while j < 8 and pieces[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    if best_start < 0:
        return "[" + ":".join(f"{p:x}" for p in pieces) + "]"
    head = ":".join(f"{p:x}" for p in pieces[:best_start])
    tail = ":".join(f"{p:x}" for p in pieces[best_start + best_len :])
    return f"[{head}::{tail}]"


def _domain_to_ascii(domain: str) -> str | None:
    # URL Standard "domain to ASCII" (UTS #46, non-transitional). ASCII input only needs
    # lowercasing; other input goes through the `idna` package (an httpx dependency), with
    # Python's IDNA 2003 codec as a fallback for labels IDNA 2008 rejects but browsers accept.
    if domain.isascii():
        return _ascii_lower(domain)
    try:
        import idna

        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except Exception:
        pass
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def _parse_host(text: str) -> str | None:
    """URL Standard "host parser" for special schemes: the serialized host, or None."""
    if text.startswith("["):
        return _serialize_ipv6(text[1:-1]) if text.endswith("]") else None
    try:
        domain = unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    ascii_domain = _domain_to_ascii(domain)
    if not ascii_domain or any(c in _FORBIDDEN_DOMAIN for c in ascii_domain):
        return None
    if _ends_in_a_number(ascii_domain):
        return _parse_ipv4(ascii_domain)
    return ascii_domain


def _normalize_path(path: str) -> str:
    # URL Standard "path state" for special URLs: "\" is a separator, "." and ".." segments
    # (also as %2e) are resolved, every segment is percent-encoded with the path set.
    segments: list[str] = []
    raw = path.replace("\\", "/").split("/")[1:] if path else [""]
    for index, segment in enumerate(raw):
        last = index == len(raw) - 1
        lowered = _ascii_lower(segment)
        if lowered in ("..", ".%2e", "%2e.", "%2e%2e"):
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif lowered in (".", "%2e"):
            if last:
                segments.append("")
        else:
            segments.append(_percent_encode(segment, _PATH_ENCODE))
    return "/" + "/".join(segments)


@functools.lru_cache(maxsize=4096)
def _parse_http_url(text: str | None) -> _HttpURL | None:
    """Parse an absolute http(s) URL the way the URL Standard would; None if it is not one.

    Cached: a scan asks about the same page URL once per image of the article, and the
    result is an immutable value.
    """
    if not text:
        return None
    # URL Standard basic URL parser: strip leading/trailing C0 control or space, remove all
    # ASCII tab or newline.
    text = text.strip(_C0_CONTROL_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    scheme, colon, rest = text.partition(":")
    scheme = _ascii_lower(scheme)
    if not colon or scheme not in _SPECIAL_PORTS:
        return None
    # Special schemes: any run of "/" or "\" introduces the authority ("http:example.com" and
    # "https:\\host" both have a host).
    rest = rest.lstrip("/\\")
    end = len(rest)
    for sep in "/\\?#":
        pos = rest.find(sep)
        if pos != -1:
            end = min(end, pos)
    authority, remainder = rest[:end], rest[end:]
    remainder = remainder.partition("#")[0]  # §8.4 step 5: the fragment is dropped anyway
    path, question, query = remainder.partition("?")
    hostport = authority.rpartition("@")[2]  # §8.4 steps 3-4: userinfo is dropped anyway
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            return None
        host_text, port_text = hostport[: close + 1], hostport[close + 1 :]
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host_text, _, port_text = hostport.partition(":")
    if not host_text:
        return None
    host = _parse_host(host_text)
    if host is None:
        return None
    port: int | None = None
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            return None
        port = int(port_text)
        if port == _SPECIAL_PORTS[scheme]:
            port = None  # URL Standard: the scheme's default port is not stored
    return _HttpURL(
        scheme=scheme,
        host=host,
        port=port,
        path=_normalize_path(path),
        query=_percent_encode(query, _QUERY_ENCODE) if question else None,
    )


def _is_trustworthy(url: _HttpURL) -> bool:
    """Secure Contexts §3.1 "Is origin potentially trustworthy?" for an http(s) origin."""
    if url.scheme == "https":  # step 3 (wss too, never an image URL)
        return True
    if url.host.startswith("["):  # step 4: ::1/128
        return url.host == "[::1]"
    try:  # step 4: 127.0.0.0/8 (the host parser already turned IPv4 forms into dotted quads)
        return ipaddress.IPv4Address(url.host) in _LOOPBACK_V4
    except ValueError:
        pass
    # step 5: "localhost", "localhost." and names under .localhost (let-localhost-be-localhost)
    name = url.host.rstrip(".") if url.host.endswith(".") else url.host
    return name == "localhost" or name.endswith(".localhost")


def is_potentially_trustworthy(url: str) -> bool:
    """Secure Contexts §3.2 "Is url potentially trustworthy?" for http(s) URLs.

    https, loopback IPs (127.0.0.0/8, ::1) and localhost names are; other http URLs and
    anything that does not parse as an http(s) URL are not (harvester never fetches those).
    """
    parsed = _parse_http_url(url)
    return parsed is not None and _is_trustworthy(parsed)


def same_origin(a: str, b: str) -> bool:
    """URL Standard "same origin" for two http(s) URLs (scheme, host, port after parsing)."""
    pa, pb = _parse_http_url(a), _parse_http_url(b)
    return pa is not None and pb is not None and pa.origin == pb.origin


def strip_url_for_referrer(url: str | None, origin_only: bool = False) -> str | None:
    """§8.4 Strip url for use as a referrer.

    Step 1: null url -> no referrer. Step 2: a local scheme (about, blob, data) -> no referrer;
    harvester goes further and accepts only http(s) page URLs (file: paths and the like name
    nothing a remote host can use). Steps 3-5: username, password and fragment removed.
    Step 6: with `origin_only`, path and query removed as well.
    """
    parsed = _parse_http_url(url)
    if parsed is None:
        return None
    return parsed.serialize_origin_only() if origin_only else parsed.serialize()


# ---------------------------------------------------------------------------------------------
# §8.3 Determine request's referrer
# ---------------------------------------------------------------------------------------------

# What a §8.3 branch returned: the full (stripped) referrer URL, or only the origin.
_FULL, _ORIGIN = "url", "origin"


def _determine(policy: str | None, page_url: str | None, image_url: str) -> tuple[str, str] | None:
    """§8.3 on parsed inputs: (Referer value, _FULL | _ORIGIN), or None for no referrer."""
    token = _policy_token(policy)
    # §8.3 step 3: the referrer source is the document's URL (the article's page URL).
    source = _parse_http_url(page_url)
    if source is None:
        return None  # §8.4 steps 1-2 (no URL, or not an http(s) URL)
    # The request's current URL; a relative reference resolves against the page (as the
    # document's base URL would). A non-http(s) target is no HTTP request: no header at all.
    if image_url and not _HAS_SCHEME.match(image_url.lstrip(_C0_CONTROL_OR_SPACE)):
        image_url = urljoin(page_url or "", image_url)
    target = _parse_http_url(image_url)
    if target is None:
        return None
    # §8.3 steps 4-5: referrerURL and referrerOrigin are the stripped source.
    referrer_url = source.serialize()
    referrer_origin = source.serialize_origin_only()
    # §8.3 step 6: "If the result of serializing referrerURL is a string whose length is
    # greater than 4096, set referrerURL to referrerOrigin."
    if len(referrer_url) > MAX_REFERRER_LENGTH:
        referrer_url = referrer_origin
    # §8.3 step 7 lets a user agent trim further; harvester does not.
    is_same_origin = source.origin == target.origin
    # "referrerURL is a potentially trustworthy URL and request's current URL is not".
    downgrade = _is_trustworthy(source) and not _is_trustworthy(target)
    # §8.3 step 8: one branch per policy.
    if token == "no-referrer":
        return None  # "Return no referrer."
    if token == "origin":
        return referrer_origin, _ORIGIN  # "Return referrerOrigin."
    if token == "unsafe-url":
        return referrer_url, _FULL  # "Return referrerURL."
    if token == "strict-origin":
        if downgrade:  # step 8 strict-origin.1
            return None
        return referrer_origin, _ORIGIN  # strict-origin.2
    if token == "strict-origin-when-cross-origin":
        if is_same_origin:  # strict-origin-when-cross-origin.1
            return referrer_url, _FULL
        if downgrade:  # strict-origin-when-cross-origin.2
            return None
        return referrer_origin, _ORIGIN  # strict-origin-when-cross-origin.3
    if token == "same-origin":
        if is_same_origin:  # same-origin.1
            return referrer_url, _FULL
        return None  # same-origin.2
    if token == "origin-when-cross-origin":
        if is_same_origin:  # origin-when-cross-origin.1
            return referrer_url, _FULL
        return referrer_origin, _ORIGIN  # origin-when-cross-origin.2
    # no-referrer-when-downgrade
    if downgrade:  # no-referrer-when-downgrade.1
        return None
    return referrer_url, _FULL  # no-referrer-when-downgrade.2


def referrer_for(policy: str | None, page_url: str | None, image_url: str) -> str | None:
    """The `Referer` header a browser would send fetching `image_url` from `page_url`.

    `policy`: a §3 token (ASCII case-insensitive); None or "" means the default,
    strict-origin-when-cross-origin. An unknown token raises ValueError (use
    `effective_policy` to turn raw attribute/meta values into a valid one).
    `page_url`: the referrer source; None, or anything but an http(s) URL, -> None.
    `image_url`: the request's current URL (relative references resolve against the page);
    anything but an http(s) URL -> None, since no HTTP request carries the header.

    For a redirect hop, call it again with the ORIGINAL page URL and the hop's URL: the
    referrer source stays the page, only the request's current URL changes.
    """
    decided = _determine(policy, page_url, image_url)
    return decided[0] if decided else None


# ---------------------------------------------------------------------------------------------
# Per-host Referer overrides
# ---------------------------------------------------------------------------------------------


def _normalize_pattern(pattern: str) -> str:
    pattern = pattern.strip(_ASCII_WHITESPACE)
    if pattern.isascii():
        return _ascii_lower(pattern)
    # A non-ASCII host glob ("*.例子.cn") is compared in its ASCII (punycode) form, label by
    # label so the "*" survives.
    labels = [
        label if label == "*" or not label else (_domain_to_ascii(label) or label)
        for label in pattern.split(".")
    ]
    return ".".join(labels)


# Override values that mean "send no Referer to this host" (the same words harvester.quirks'
# default table and `merge_overrides` use). "" means "no override here" (it disables a
# built-in default when the user's table is merged over the defaults).
_SEND_NONE = frozenset({"no-referrer", "none"})


def find_override(image_url: str, overrides: Mapping[str, str]) -> str | None:
    """The override value configured for `image_url`'s host, or None.

    Keys are host globs (fnmatch: `*` any run of characters, `?` one): `i0.hdslb.com` matches
    only that host, `*.sinaimg.cn` matches every subdomain but not `sinaimg.cn` itself.
    Matching is ASCII case-insensitive on the parsed host (punycode for IDNs, "[v6]" for IPv6
    literals, a trailing dot ignored); the port is ignored. An exact host entry beats any glob;
    among globs the longest pattern (the most specific) wins, ties broken by the pattern text
    (so the answer does not depend on the mapping's order).
    """
    target = _parse_http_url(image_url)
    if target is None or not overrides:
        return None
    host = target.host.rstrip(".") or target.host
    best: tuple[int, int, str] | None = None
    value: str | None = None
    for pattern, candidate in overrides.items():
        normalized = _normalize_pattern(pattern)
        normalized = normalized.rstrip(".") or normalized
        if normalized == host:
            rank = (1, len(normalized), normalized)
        elif fnmatch.fnmatchcase(host, normalized):
            rank = (0, len(normalized), normalized)
        else:
            continue
        if best is None or rank > best:
            best, value = rank, candidate
    return value


def check_overrides(overrides: Mapping[str, str]) -> list[str]:
    """Problems with an override table, one message each (empty list: the table is usable).

    Every key must be a host glob; every value an absolute http(s) URL, "no-referrer" (or
    "none": send no Referer) or "" (no override for this host). For config loading:
    `apply_override` ignores an unusable value (the computed Referer stands) rather than stop
    a run, so report these up front.
    """
    problems = []
    for pattern, value in overrides.items():
        bare = pattern.strip(_ASCII_WHITESPACE)
        if not bare or any(c in bare for c in "/@ \t") or (":" in bare and bare[0] != "["):
            problems.append(f"referer override key {pattern!r} is not a host glob")
        word = _ascii_lower(value.strip(_ASCII_WHITESPACE))
        if word and word not in _SEND_NONE and _parse_http_url(value) is None:
            problems.append(
                f"referer override for {pattern!r}: {value!r} must be an http(s) URL, "
                "'no-referrer' (send none) or '' (no override)"
            )
    return problems


def apply_override(
    policy: str, page_url: str | None, image_url: str, overrides: Mapping[str, str]
) -> str | None:
    """The Referer to send to `image_url` once the per-host override table is applied.

    Rules (the override never sends what the policy forbade):
    1. First compute the policy's Referer with `referrer_for`. If it is None (no-referrer,
       a downgrade under a strict policy, same-origin to another origin, no page URL, ...),
       only a fixed override that carries no page information may be sent: it goes as its
       origin alone, and never when that origin is the page's own (that would reveal the
       page's site, which the policy withheld). Hosts such as *.sinaimg.cn refuse requests
       without their own site as Referer, and feeds mark exactly those images no-referrer.
    2. No override entry for the image's host (see `find_override`), or an entry of "":
       the computed Referer.
    3. An entry of "no-referrer" (or "none"; ASCII case-insensitive) means "send no Referer
       to this host": None (withholding is always allowed).
    4. An entry that is not an http(s) URL is ignored: the computed Referer
       (`check_overrides` reports it at config time).
    5. Otherwise the override replaces the computed Referer, cut to what the policy's branch
       allowed: where the policy sent only an origin, the override is reduced to its origin
       ("https://weibo.com/u/1" -> "https://weibo.com/"); where it sent the full URL, the
       override is stripped like any referrer (§8.4: no userinfo, no fragment) and falls back
       to its origin when longer than 4096 characters (§8.3 step 6).
    For redirect hops, pass the original page URL and the hop's URL, as for `referrer_for`:
    the hop's host selects the override.
    """
    decided = _determine(policy, page_url, image_url)
    override = find_override(image_url, overrides) if overrides else None
    word = _ascii_lower(override.strip(_ASCII_WHITESPACE)) if override is not None else ""
    if decided is None:
        return _override_without_page_information(override, word, page_url)  # rule 1
    computed, allowed = decided
    if not word:
        return computed  # rule 2
    if word in _SEND_NONE:
        return None  # rule 3
    parsed = _parse_http_url(override)
    if parsed is None:
        return computed  # rule 4
    if allowed == _ORIGIN:
        return parsed.serialize_origin_only()  # rule 5, origin-only branch
    full = parsed.serialize()
    return full if len(full) <= MAX_REFERRER_LENGTH else parsed.serialize_origin_only()


def _override_without_page_information(
    override: str | None, word: str, page_url: str | None
) -> str | None:
    """Rule 1 of `apply_override`: the policy sends nothing; a foreign fixed origin may go."""
    if override is None or not word or word in _SEND_NONE:
        return None
    parsed = _parse_http_url(override)
    if parsed is None:
        return None
    origin = parsed.serialize_origin_only()
    page = _parse_http_url(page_url) if page_url else None
    if page is not None and page.serialize_origin_only() == origin:
        return None
    return origin

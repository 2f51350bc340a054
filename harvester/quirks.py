"""Real-world URL quirks: image-proxy wrappers, random placeholders, hosts that want a Referer.

Input: image URLs as found in articles (absolute http/https). Output: plain answers the
pipeline acts on — no I/O here.

- :func:`plan_url` — both of the below in one call: the URLs to try, in order, or a skip.
- :func:`unwrap_proxy` — the original image URL behind a well-known image proxy or CORS
  relay (weserv, Jetpack Photon, DuckDuckGo, Cloudflare-worker relays, …), or ``None``.
  The pipeline fetches the original first and falls back to the wrapper URL; both are
  recorded. The article keeps whatever URL it had until the rewrite points it at the local copy.
- :func:`is_random_placeholder` — services whose every fetch is a different picture
  (``picsum.photos/200/300``, ``source.unsplash.com/random``); mirroring one freezes an
  arbitrary picture, so the pipeline records them as ``skipped`` with reason ``placeholder``.
- :data:`DEFAULT_REFERER_OVERRIDES`, :func:`merge_overrides` (matched by
  `harvester.referrer.find_override`) —
  per-host Referer values for CDNs that refuse requests without (or with a foreign) Referer.

Nothing here touches an article's ``referrerpolicy`` attributes: overrides change only the
header harvester itself sends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "DEFAULT_REFERER_OVERRIDES",
    "NO_REFERER",
    "PLACEHOLDER_REASON",
    "Unwrapped",
    "UrlPlan",
    "is_random_placeholder",
    "merge_overrides",
    "plan_url",
    "unwrap_proxy",
    "unwrap_proxy_detail",
]

# The manifest reason recorded for a skipped random placeholder.
PLACEHOLDER_REASON = "placeholder"

# Nesting depth we follow (weserv of weserv of …); deeper chains are left as they are.
_MAX_LAYERS = 5

# A DNS host name with at least one dot (Photon's first path segment must be one).
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}(?::\d{1,5})?$"
)


@dataclass(frozen=True)
class Unwrapped:
    """An image proxy URL taken apart.

    `original` is the innermost URL; `services` names each wrapper peeled, outermost first
    (e.g. ``("weserv", "photon")``), for the manifest.
    """

    original: str
    wrapper: str
    services: tuple[str, ...]


def unwrap_proxy(url: str) -> str | None:
    """The original image URL behind a known proxy wrapper, or None if `url` is not one."""
    detail = unwrap_proxy_detail(url)
    return detail.original if detail else None


def unwrap_proxy_detail(url: str) -> Unwrapped | None:
    """Like :func:`unwrap_proxy`, also saying which services were peeled (nested ones too)."""
    current = url
    services: list[str] = []
    for _ in range(_MAX_LAYERS):
        step = _unwrap_once(current)
        if step is None:
            break
        service, inner = step
        if inner == current:
            break
        services.append(service)
        current = inner
    if not services:
        return None
    return Unwrapped(original=current, wrapper=url, services=tuple(services))


def _unwrap_once(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    for service, matches, extract in _UNWRAPPERS:
        if matches(host):
            inner = extract(url, parts)
            if inner is not None and _is_web_url(inner):
                return service, inner
            return None
    return None


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for junk ports
    except ValueError:
        return False
    del port
    host = parts.hostname or ""
    return parts.scheme in ("http", "https") and bool(host) and ("." in host or host == "localhost")


def _query_param(parts, *names: str) -> str | None:
    params = parse_qs(parts.query, keep_blank_values=False)
    for name in names:
        values = params.get(name)
        if values and values[0].strip():
            return values[0].strip()
    return None


def _with_default_scheme(target: str, default: str = "https") -> str | None:
    """`target` as an absolute URL; a missing scheme means `default` (see module notes)."""
    target = target.strip()
    lowered = target.lower()
    if lowered.startswith(("http://", "https://")):
        return target
    if lowered.startswith("ssl:"):  # weserv's old way of saying "fetch over https"
        return "https://" + target[4:].lstrip("/")
    if lowered.startswith("//"):
        return f"{default}:{target}"
    if "://" in target.split("/", 1)[0]:
        return None  # another scheme (ftp:, data:, …): not an image we fetch
    if not target or target.startswith("/"):
        return None
    return f"{default}://{target}"


def _weserv(url: str, parts) -> str | None:
    # images.weserv.nl/?url=example.com/a.jpg&w=300 — every other parameter is processing.
    # weserv itself used to read a scheme-less `url` as http and `ssl:` as https; we try
    # https for scheme-less values, since the wrapper stays the fallback if that fails.
    target = _query_param(parts, "url")
    return _with_default_scheme(target) if target else None


def _photon(url: str, parts) -> str | None:
    # i0.wp.com/<host>/<path>?w=600&ssl=1 — Jetpack Photon. The query holds only resizing
    # options (Photon ignores the origin's own query string); ssl=1 means the origin is https.
    path = parts.path.lstrip("/")
    origin_host, _, origin_path = path.partition("/")
    if not _HOST_RE.match(origin_host.lower()) or not origin_path:
        return None
    ssl = _query_param(parts, "ssl")
    scheme = "https" if ssl in ("1", "true") else "http"
    return f"{scheme}://{origin_host}/{origin_path}"


def _duckduckgo(url: str, parts) -> str | None:
    # proxy.duckduckgo.com/iu/?u=<url>&f=1 and external-content.duckduckgo.com/iu/?u=…
    if not parts.path.rstrip("/").endswith(("/iu", "/iur")):
        return None
    target = _query_param(parts, "u")
    return _with_default_scheme(target) if target else None


def _query_relay(url: str, parts) -> str | None:
    # CORS relays: https://relay.example.workers.dev/?https://host/a.jpg (the whole query is
    # the target, possibly percent-encoded), /?url=<target>, or /https://host/a.jpg (path form).
    raw_query = url.split("?", 1)[1] if "?" in url else ""
    raw_query = raw_query.split("#", 1)[0]
    decoded = (
        unquote(raw_query) if raw_query.lower().startswith(("http%3a", "https%3a")) else raw_query
    )
    if decoded.lower().startswith(("http://", "https://")):
        return decoded
    target = _query_param(parts, "url", "u", "src")
    if target:
        if target.lower().startswith(("http://", "https://")):
            return target
        return _with_default_scheme(target) if "." in target.split("/", 1)[0] else None
    path = parts.path.lstrip("/")
    if path.lower().startswith(("http://", "https://", "http:/", "https:/")):
        # Some servers collapse "//" in paths to "/": put the second slash back.
        scheme, _, rest = path.partition(":")
        rest = rest.lstrip("/")
        target = f"{scheme.lower()}://{rest}"
        if parts.query:
            target += "?" + parts.query
        return target
    return None


def _google_gadgets(url: str, parts) -> str | None:
    # images1-focus-opensocial.googleusercontent.com/gadgets/proxy?container=focus&url=…
    if not parts.path.startswith("/gadgets/proxy"):
        return None
    target = _query_param(parts, "url")
    return _with_default_scheme(target) if target else None


def _is_photon_host(host: str) -> bool:
    return host in ("i0.wp.com", "i1.wp.com", "i2.wp.com", "i3.wp.com")


def _is_weserv_host(host: str) -> bool:
    return host in ("images.weserv.nl", "wsrv.nl", "www.wsrv.nl", "images.wsrv.nl")


def _is_duckduckgo_host(host: str) -> bool:
    return host in ("proxy.duckduckgo.com", "external-content.duckduckgo.com")


def _is_relay_host(host: str) -> bool:
    # *.workers.dev is Cloudflare's free worker domain, where most public CORS relays live;
    # the others are long-running public relays with the same URL shapes.
    return host.endswith(".workers.dev") or host in (
        "corsproxy.io",
        "cors-anywhere.herokuapp.com",
        "api.allorigins.win",
    )


def _is_google_gadgets_host(host: str) -> bool:
    return host.endswith("-opensocial.googleusercontent.com")


_UNWRAPPERS = (
    ("weserv", _is_weserv_host, _weserv),
    ("photon", _is_photon_host, _photon),
    ("duckduckgo", _is_duckduckgo_host, _duckduckgo),
    ("cors-relay", _is_relay_host, _query_relay),
    ("google-gadgets", _is_google_gadgets_host, _google_gadgets),
)


@dataclass(frozen=True)
class UrlPlan:
    """How the pipeline should fetch one article URL, after the quirks are applied.

    `candidates` are the URLs to try in order: the unwrapped original first, then the URL as
    written (the wrapper). `skip_reason` is set (to :data:`PLACEHOLDER_REASON`) when nothing
    should be fetched; `candidates` is then empty. `services` names the wrappers peeled.
    """

    url: str
    candidates: tuple[str, ...]
    skip_reason: str | None = None
    services: tuple[str, ...] = ()

    @property
    def unwrapped(self) -> str | None:
        """The original behind a wrapper, or None when `url` is not wrapped."""
        return self.candidates[0] if self.services and self.candidates else None


def plan_url(url: str, *, skip_placeholders: bool = True) -> UrlPlan:
    """The fetch plan for `url`: unwrap known proxies, skip random placeholders.

    A placeholder hidden behind a proxy (weserv of ``picsum.photos/200/300``) is skipped too.
    """
    detail = unwrap_proxy_detail(url)
    services = detail.services if detail else ()
    if skip_placeholders and (
        is_random_placeholder(url)
        or (detail is not None and is_random_placeholder(detail.original))
    ):
        return UrlPlan(url=url, candidates=(), skip_reason=PLACEHOLDER_REASON, services=services)
    if detail is None:
        return UrlPlan(url=url, candidates=(url,))
    return UrlPlan(url=url, candidates=(detail.original, url), services=services)


# --- random placeholders ------------------------------------------------------------------

_PICSUM_RANDOM_PATH = re.compile(r"^/(?:g/)?\d+(?:/\d+)?(?:\.(?:jpe?g|webp))?/?$")
_UNSPLASH_PHOTO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_UNSPLASH_RANDOM_WORDS = {"random", "featured", "user", "collection", "category", "daily", "weekly"}


def is_random_placeholder(url: str) -> bool:
    """True for placeholder URLs that return a different picture on each fetch.

    Fixed placeholders (placehold.co, via.placeholder.com, dummyimage.com, picsum ``/id/…``
    and ``/seed/…``) are ordinary images and return False.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if host.startswith("www."):
        host = host[4:]
    path = parts.path or "/"
    query = parse_qs(parts.query, keep_blank_values=True)
    if host in ("picsum.photos", "unsplash.it"):  # unsplash.it is picsum's old name
        if path.startswith(("/id/", "/seed/")):
            return False  # a fixed photo, whatever else the query says
        if "image" in query:
            return False  # legacy ?image=<id> selects one photo
        return _PICSUM_RANDOM_PATH.match(path) is not None or "random" in query
    if host == "source.unsplash.com":
        # Unsplash Source (shut down in 2024): /random, /featured, /user/…, /collection/…,
        # /1600x900/?nature are random; /<11-character photo id>/… is one photo.
        first = path.strip("/").split("/", 1)[0]
        if first.lower() in _UNSPLASH_RANDOM_WORDS or not first:
            return True
        if re.fullmatch(r"\d+x\d+", first):
            return True
        return _UNSPLASH_PHOTO_ID.match(first) is None
    if host == "loremflickr.com":
        # /320/240/dog is random; ?lock=<n> pins one picture; /cache/… is a stored file.
        return "lock" not in query and not path.startswith("/cache/")
    if host == "placeimg.com":
        return True  # every URL shape was random (service closed in 2023)
    if host == "lorempixel.com":
        # /400/200/sports is random; /400/200/sports/3 is the third picture of the category.
        segments = [s for s in path.split("/") if s]
        return not (len(segments) >= 4 and segments[3].isdigit())
    return False


# --- per-host Referer overrides --------------------------------------------------------------

# The override value that means "send no Referer to this host".
NO_REFERER = "no-referrer"

# Host glob → the Referer to send there, for CDNs that answer a foreign Referer (or none) with
# 403 or a substitute picture. Evidence is cited per entry; add only hosts you can justify.
# The user's `referer_overrides` config wins over these; a user value of "" disables one.
DEFAULT_REFERER_OVERRIDES: dict[str, str] = {
    # Weibo's image CDN: 403 for a foreign Referer since 2019, and since late 2022 also for
    # requests with none; `Referer: https://weibo.com/` works (dataabc/weiboSpider#503,
    # DIYgod/RSSHub#11096 and the fix in RSSHub PR #11320).
    "*.sinaimg.cn": "https://weibo.com/",
    # Bilibili's CDN: "X-Tengine-Error: denied by Refer ACL" (403) for a foreign Referer,
    # fine when opened directly (DIYgod/RSSHub#1297). A bilibili Referer passes the ACL.
    "*.hdslb.com": "https://www.bilibili.com/",
    # Douban's image CDN: 403 without a douban Referer since July 2023, including requests with
    # no Referer; `Referer: https://movie.douban.com` works (Rocket-Factory/MovieJSON#6,
    # mythsman/hexo-douban#135).
    "*.doubanio.com": "https://www.douban.com/",
    # WeChat articles' images: a foreign Referer gets a 200 "此图片来自微信公众平台 未经允许不可
    # 引用" substitute picture (nodeWechat/wechat4u#260); no Referer gets the real image
    # (wechat-article/wechat-article-exporter#21). A substitute would be mirrored as if real.
    "mmbiz.qpic.cn": NO_REFERER,
    # Yuque (语雀) attachments: 403 for a foreign Referer, fine with none
    # (x-cold/yuque-hexo#41, Juexe/YuqueSync#2).
    "cdn.nlark.com": NO_REFERER,
    # CSDN blog images: blocked for a foreign Referer (halo-dev/halo#4077 shows the request),
    # fine with none.
    "img-blog.csdnimg.cn": NO_REFERER,
    # Zhihu images: hotlink protection on foreign Referers (OI-wiki/OI-wiki#103,
    # yatessss/zhihudaily-vue#3: `referrerpolicy="no-referrer"` makes them load).
    "*.zhimg.com": NO_REFERER,
}


def merge_overrides(defaults: dict[str, str], user: dict[str, str]) -> dict[str, str]:
    """`defaults` overlaid with `user` (the user wins); a user value of "" removes a default.

    Patterns are compared case-insensitively. Values other than "" and ``"no-referrer"`` must
    be absolute http(s) URLs; anything else raises ``ValueError`` naming the pattern.
    """
    merged = {pattern.lower(): value for pattern, value in defaults.items()}
    for pattern, value in user.items():
        key = pattern.strip().lower()
        value = value.strip()
        if not key:
            raise ValueError("referer_overrides: empty host pattern")
        if value == "":
            merged.pop(key, None)
            continue
        if value.lower() in (NO_REFERER, "none"):
            merged[key] = NO_REFERER
            continue
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"referer_overrides: {pattern!r} = {value!r} must be an http(s) URL, "
                f'"{NO_REFERER}" (send none) or "" (disable the default)'
            )
        merged[key] = value
    return merged

"""Site presets: where a Hexo, Hugo or Jekyll site keeps its posts and serves static files.

Input: a site root folder (and optionally a preset name). Output: a frozen :class:`PresetResult`
with the article folders, the store folder inside the generator's static tree, the site-root
URL prefix for rewritten links, the site URL (the referrer source) and the manifest path —
read from the site's own config (`_config.yml`, `hugo.toml`/`config.toml`, …).

The CLI applies a preset as *defaults*: an explicit flag beats the config file, which beats the
preset, which beats the built-in default (:func:`apply_preset`). A preset never writes a file.

- Hexo: posts in `<source_dir>/_posts`; store `<source_dir>/images/mirror`; links
  `<root>images/mirror`; site URL `url`.
- Hugo: posts in `<contentDir>`; store `<staticDir>/images/mirror`; links `<path of
  baseURL>images/mirror`; site URL `baseURL`.
- Jekyll: posts in `<source>/_posts`; store `<source>/assets/images/mirror`; links
  `<baseurl>/assets/images/mirror`; site URL `url` + `baseurl`.

The manifest goes to `<site root>/.harvester/manifest.json`, outside every content folder (and
a dot-folder, which Hexo and Jekyll never publish).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from harvester.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MANIFEST_RELPATH",
    "MIRROR_SUBDIR",
    "PRESETS",
    "PresetResult",
    "apply_preset",
    "detect_candidates",
    "detect_preset",
    "preset_settings",
    "resolve_preset",
]

PRESETS = ("hexo", "hugo", "jekyll")
MIRROR_SUBDIR = PurePosixPath("images/mirror")
MANIFEST_RELPATH = Path(".harvester/manifest.json")

# Keys only Hexo's `_config.yml` has (Jekyll shares `url`, `permalink`, `theme`, …).
_HEXO_KEYS = frozenset(
    {
        "root",
        "source_dir",
        "public_dir",
        "tag_dir",
        "archive_dir",
        "category_dir",
        "code_dir",
        "i18n_dir",
        "skip_render",
        "new_post_name",
        "default_layout",
        "post_asset_folder",
        "relative_link",
        "render_drafts",
        "permalink_defaults",
        "pretty_urls",
    }
)
_HUGO_CONFIG_NAMES = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json")
_HUGO_LEGACY_NAMES = ("config.toml", "config.yaml", "config.yml", "config.json")

# Scaffold values `hexo init` / `hugo new site` write; a site that still has them has no real
# URL yet, and sending them as a Referer would be made up.
_SCAFFOLD_URLS = frozenset(
    {"http://example.com", "http://yoursite.com", "https://example.org", "http://example.org"}
)


@dataclass(frozen=True)
class PresetResult:
    """What a preset says about one site. Paths are absolute (site root joined)."""

    name: str
    site_root: Path
    article_paths: tuple[Path, ...]
    out: Path  # the store folder, inside the generator's static tree
    url_prefix: str  # site-root URL prefix for rewritten links, e.g. "/blog/images/mirror"
    site_url: str | None  # the referrer source; None when the site config has no real URL
    manifest: Path
    static_root: Path  # the folder the generator publishes at `url_base`
    url_base: str  # what links into static_root start with: the site's path ("/", "/blog/")
    notes: tuple[str, ...] = field(default=())  # things the user may want to know

    def settings_values(self) -> dict[str, Any]:
        """The Settings field values this preset supplies (site_url only when known)."""
        values: dict[str, Any] = {
            "out": self.out,
            "manifest": self.manifest,
            "url_prefix": self.url_prefix,
        }
        if self.site_url is not None:
            values["site_url"] = self.site_url
        return values

    def url_prefix_for(self, out: Path) -> str | None:
        """The link prefix for a store folder `out`, or None if the generator would not publish it.

        Used when the user moves the store (`--out`) but keeps the preset's link logic. A
        relative `out` is relative to the current directory, like the flag.
        """
        out = _absolute(out)
        try:
            relative = out.relative_to(self.static_root)
        except ValueError:
            return None
        if self.name in ("hexo", "jekyll") and any(
            part.startswith(("_", ".")) for part in relative.parts
        ):
            return None  # Hexo and Jekyll skip "_x" and ".x" folders when they copy files
        return _join_url(self.url_base, relative.as_posix())


def detect_candidates(site_root: Path) -> dict[str, tuple[str, ...]]:
    """For each generator the folder looks like, the evidence found (for messages)."""
    root = Path(site_root)
    found: dict[str, tuple[str, ...]] = {}

    config_yml = root / "_config.yml"
    hexo: list[str] = []
    jekyll: list[str] = []
    if config_yml.is_file():
        data = _read_yaml_quietly(config_yml)
        hexo_keys = sorted(_HEXO_KEYS & set(data)) if isinstance(data, dict) else []
        if hexo_keys:
            hexo.append(f"_config.yml has Hexo keys ({', '.join(hexo_keys[:3])})")
        if _package_depends_on(root / "package.json", "hexo"):
            hexo.append("package.json depends on hexo")
        source_dir = (
            _str_value(data, "source_dir", "source") if isinstance(data, dict) else "source"
        )
        if (root / source_dir / "_posts").is_dir():
            hexo.append(f"{source_dir}/_posts/ exists")
        if (root / "_posts").is_dir():
            jekyll.append("_posts/ exists beside _config.yml")
        gemfile = root / "Gemfile"
        if gemfile.is_file() and "jekyll" in _read_text_quietly(gemfile).lower():
            jekyll.append("Gemfile mentions jekyll")
    if hexo:
        found["hexo"] = tuple(hexo)
    if jekyll:
        found["jekyll"] = tuple(jekyll)

    hugo: list[str] = []
    for name in _HUGO_CONFIG_NAMES:
        if (root / name).is_file():
            hugo.append(f"{name} exists")
    for name in _HUGO_LEGACY_NAMES:
        path = root / name
        if (
            path.is_file()
            and _lower_keys(_read_quietly(path)).get("baseurl") is not None
            and ((root / "content").is_dir() or (root / "archetypes").is_dir())
        ):
            hugo.append(f"{name} has baseURL and content/ exists")
    if (root / "config" / "_default").is_dir():
        hugo.append("config/_default/ exists")
    if hugo:
        found["hugo"] = tuple(hugo)
    return found


def detect_preset(site_root: Path) -> str | None:
    """ "hexo", "hugo" or "jekyll" when exactly one matches `site_root`; None if none or several."""
    candidates = detect_candidates(site_root)
    return next(iter(candidates)) if len(candidates) == 1 else None


def preset_settings(name: str, site_root: Path) -> PresetResult:
    """The preset `name` applied to the site at `site_root`; ConfigError for a broken config."""
    root = Path(site_root).resolve()
    if not root.is_dir():
        raise ConfigError(f"preset {name}: site folder {site_root} does not exist")
    key = name.strip().lower()
    if key == "hexo":
        return _hexo(root)
    if key == "hugo":
        return _hugo(root)
    if key == "jekyll":
        return _jekyll(root)
    raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")


def resolve_preset(name: str | None, site_root: Path) -> PresetResult | None:
    """`--preset` as the CLI reads it: a name, "auto" (detect, error if unclear), or None."""
    if name is None or name.strip().lower() in ("", "none"):
        return None
    if name.strip().lower() != "auto":
        return preset_settings(name, site_root)
    candidates = detect_candidates(site_root)
    if len(candidates) == 1:
        return preset_settings(next(iter(candidates)), site_root)
    if not candidates:
        raise ConfigError(
            f"--preset auto: {site_root} does not look like a Hexo, Hugo or Jekyll site; "
            "pass --preset hexo|hugo|jekyll or the paths and --out yourself"
        )
    evidence = "; ".join(f"{gen}: {', '.join(why)}" for gen, why in candidates.items())
    raise ConfigError(
        f"--preset auto: {site_root} looks like more than one generator ({evidence}); "
        "pass --preset hexo|hugo|jekyll"
    )


def apply_preset(
    values: dict[str, Any], preset: PresetResult | None, explicit: set[str]
) -> dict[str, Any]:
    """Settings values with the preset filled in under what the user chose.

    `values` holds what the config file and the flags set (flags already merged over the config
    file); `explicit` names the fields the user set in either place. Precedence, highest first:
    explicit flag > config file > preset > built-in default. One coupling: when the user moved
    the store (`out`) but did not set `url_prefix`, the prefix follows `out` if the generator
    publishes that folder; otherwise it is left unset (links relative to each article).
    """
    merged = dict(values)
    if preset is None:
        return merged
    chosen = set(explicit) | set(values)
    for name, value in preset.settings_values().items():
        if name not in chosen:
            merged[name] = value
    if "out" in chosen and "url_prefix" not in chosen:
        prefix = preset.url_prefix_for(Path(merged["out"]))
        if prefix is None:
            merged.pop("url_prefix", None)
        else:
            merged["url_prefix"] = prefix
    return merged


# --- the three generators -------------------------------------------------------------------


def _hexo(root: Path) -> PresetResult:
    config = _load_mapping(root / "_config.yml", required=False)
    notes: list[str] = []
    if config is None:
        notes.append("no _config.yml: using Hexo's defaults (source/, root /)")
        config = {}
    source_dir = _str_value(config, "source_dir", "source", path=root / "_config.yml")
    site_url = _site_url(config.get("url"), notes, key="url")
    # Hexo itself (lib/hexo/load_config) takes `root` from the path of `url` when `root` is
    # not set, so "url: https://example.org/blog" alone publishes under /blog/.
    url = config.get("url")
    default_root = urlsplit(url).path if isinstance(url, str) and url.strip() else "/"
    root_value = config.get("root") or default_root
    url_base = _normalise_base(
        _str_value({"root": root_value}, "root", "/", path=root / "_config.yml")
    )
    static_root = root / source_dir
    out = static_root / Path(MIRROR_SUBDIR)
    return PresetResult(
        name="hexo",
        site_root=root,
        article_paths=(static_root / "_posts",),
        out=out,
        url_prefix=_join_url(url_base, MIRROR_SUBDIR.as_posix()),
        site_url=site_url,
        manifest=root / MANIFEST_RELPATH,
        static_root=static_root,
        url_base=url_base,
        notes=tuple(notes),
    )


def _hugo(root: Path) -> PresetResult:
    config_path = _hugo_config_path(root)
    notes: list[str] = []
    if config_path is None:
        notes.append("no hugo.toml/config.toml found: using Hugo's defaults")
        config: dict[str, Any] = {}
    else:
        config = _lower_keys(_load_mapping(config_path, required=True))
    where = config_path or root
    base_url = config.get("baseurl")
    if base_url is not None and not isinstance(base_url, str):
        raise ConfigError(f"{where}: baseURL must be a string, got {base_url!r}")
    url_base = _normalise_base(urlsplit(base_url).path if base_url else "/")
    content_dir = _str_value(config, "contentdir", "content", path=where)
    static_dir = config.get("staticdir", "static")
    if isinstance(static_dir, list):
        if not static_dir or not all(isinstance(d, str) for d in static_dir):
            raise ConfigError(f"{where}: staticDir must be a folder name or a list of them")
        if len(static_dir) > 1:
            notes.append(f"staticDir lists several folders; mirrored images go to {static_dir[0]}")
        static_dir = static_dir[0]
    if not isinstance(static_dir, str) or not static_dir:
        raise ConfigError(f"{where}: staticDir must be a folder name, got {static_dir!r}")
    if isinstance(config.get("languages"), dict) and any(
        isinstance(lang, dict) and "contentdir" in _lower_keys(lang)
        for lang in config["languages"].values()
    ):
        notes.append("per-language contentDir is not followed; pass those folders as paths")
    site_url = _site_url(base_url, notes, key="baseURL")
    link_base = url_base
    rewriting = [k for k in ("canonifyurls", "relativeurls") if config.get(k) is True]
    if rewriting and url_base != "/":
        # With canonifyURLs/relativeURLs Hugo itself puts baseURL's path in front of site-root
        # links ("/images/x" → "/docs/images/x"), so a link that already has it would double it
        # (gohugoio/hugo#711, #7166).
        link_base = "/"
        notes.append(f"{rewriting[0]} is on: links omit {url_base!r}, which Hugo adds itself")
    static_root = root / static_dir
    return PresetResult(
        name="hugo",
        site_root=root,
        article_paths=(root / content_dir,),
        out=static_root / Path(MIRROR_SUBDIR),
        url_prefix=_join_url(link_base, MIRROR_SUBDIR.as_posix()),
        site_url=site_url,
        manifest=root / MANIFEST_RELPATH,
        static_root=static_root,
        url_base=link_base,
        notes=tuple(notes),
    )


def _jekyll(root: Path) -> PresetResult:
    config_path = root / "_config.yml"
    config = _load_mapping(config_path, required=False)
    notes: list[str] = []
    if config is None:
        notes.append("no _config.yml: using Jekyll's defaults")
        config = {}
    source = _str_value(config, "source", ".", path=config_path)
    baseurl = config.get("baseurl") or ""
    if not isinstance(baseurl, str):
        raise ConfigError(f"{config_path}: baseurl must be a string, got {baseurl!r}")
    url_base = _normalise_base(baseurl)
    source_root = (root / source).resolve()
    collections_dir = _str_value(config, "collections_dir", "", path=config_path)
    posts = source_root / collections_dir / "_posts" if collections_dir else source_root / "_posts"
    if isinstance(config.get("collections"), (dict, list)) and config["collections"]:
        notes.append("collections other than _posts are not scanned; pass their folders as paths")
    url = config.get("url")
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"{config_path}: url must be a string, got {url!r}")
    site_url = _site_url(url.rstrip("/") + baseurl if url else None, notes, key="url")
    return PresetResult(
        name="jekyll",
        site_root=root,
        article_paths=(posts,),
        out=source_root / "assets" / Path(MIRROR_SUBDIR),
        url_prefix=_join_url(url_base, "assets/" + MIRROR_SUBDIR.as_posix()),
        site_url=site_url,
        manifest=root / MANIFEST_RELPATH,
        static_root=source_root,
        url_base=url_base,
        notes=tuple(notes),
    )


# --- helpers --------------------------------------------------------------------------------


def _hugo_config_path(root: Path) -> Path | None:
    for name in _HUGO_CONFIG_NAMES + _HUGO_LEGACY_NAMES:
        if (root / name).is_file():
            return root / name
    for name in _HUGO_CONFIG_NAMES + _HUGO_LEGACY_NAMES:
        if (root / "config" / "_default" / name).is_file():
            return root / "config" / "_default" / name
    return None


def _load_mapping(path: Path, *, required: bool) -> dict[str, Any] | None:
    """Parse a YAML/TOML/JSON config into a dict; ConfigError with the file name if broken."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: file not found") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read site config {path}: {exc}") from exc
    try:
        data = _parse(path, text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {_kind(path)}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _kind(path: Path) -> str:
    return {".toml": "TOML", ".json": "JSON"}.get(path.suffix.lower(), "YAML")


def _read_quietly(path: Path) -> Any:
    """Parse for detection only: a broken file is simply no evidence (the preset will say why)."""
    try:
        return _parse(path, path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, tomllib.TOMLDecodeError):
        return None


def _read_yaml_quietly(path: Path) -> Any:
    return _read_quietly(path)


def _read_text_quietly(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _package_depends_on(package_json: Path, name: str) -> bool:
    data = _read_quietly(package_json)
    if not isinstance(data, dict):
        return False
    for section in ("dependencies", "devDependencies"):
        deps = data.get(section)
        if isinstance(deps, dict) and name in deps:
            return True
    return isinstance(data.get("hexo"), dict)  # `hexo init` records {"hexo": {"version": …}}


def _lower_keys(data: Any) -> dict[str, Any]:
    # Hugo reads its config keys case-insensitively (baseURL == baseurl).
    return {str(k).lower(): v for k, v in data.items()} if isinstance(data, dict) else {}


def _str_value(config: Any, key: str, default: str, *, path: Path | None = None) -> str:
    if not isinstance(config, dict):
        return default
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{key} must be a string, got {value!r}")
    value = value.strip()
    if key == "root":  # a URL path, not a folder
        return value
    if Path(value).is_absolute() or ".." in PurePosixPath(value).parts:
        where = f"{path}: " if path else ""
        raise ConfigError(f"{where}{key} must be a folder inside the site, got {value!r}")
    return value.strip("/")


def _normalise_base(base: str) -> str:
    """ "/blog", "blog/", "/blog/" → "/blog/"; "" and "/" → "/"."""
    base = base.strip().strip("/")
    return f"/{base}/" if base else "/"


def _join_url(base: str, tail: str) -> str:
    return _normalise_base(base) + tail.strip("/")


def _site_url(value: Any, notes: list[str], *, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"site {key} must be a string, got {value!r}")
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        notes.append(f"site {key} {value!r} is not an absolute http(s) URL; no Referer source")
        return None
    if value.rstrip("/") in _SCAFFOLD_URLS:
        notes.append(f"site {key} is still the generator's placeholder {value!r}; ignored")
        return None
    return value


def _absolute(path: Path) -> Path:
    # Relative paths are relative to the current directory, as flags and config values are.
    return Path(path).resolve()

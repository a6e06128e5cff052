"""Make an ``asv publish`` site work with no internet.

asv 0.6's ``index.html`` loads jQuery, flot, stupidtable, blueimp-md5 and
bootstrap from CDNs; on an air-gapped cluster the page falls through to
``error.html``. :func:`make_offline` copies the files vendored next to this
module (see ``vendor/README.md``) into the site and points the pages at them.
"""

from __future__ import annotations

import posixpath
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "vendor"

# Every CDN asset asv 0.6.6's pages load, by exact URL, and its vendored
# copy (relative to ``vendor/``). Exact URLs on purpose: an asv release that
# changes one is left unmapped and fails the remote-reference check below.
LOCAL = {
    "https://code.jquery.com/jquery-3.3.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js": "flot/jquery.flot.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.selection.min.js": (
        "flot/jquery.flot.selection.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.categories.min.js": (
        "flot/jquery.flot.categories.js"
    ),
    "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js": (
        "flot-orderbars/jquery.flot.orderBars.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js": (
        "stupidtable/stupidtable.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js": "blueimp-md5/md5.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js": "bootstrap/js/bootstrap.min.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css": (
        "bootstrap/css/bootstrap.min.css"
    ),
}

# <link rel=...> values that make the browser fetch the href while loading.
_FETCHED_RELS = {"stylesheet", "icon", "preload", "modulepreload", "prefetch", "import", "manifest"}
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# Attributes that only make sense for a cross-origin fetch.
_DROP_ATTR = re.compile(
    r"""\s+(?:integrity|crossorigin|referrerpolicy)(?![\w-])(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""",
    re.IGNORECASE,
)


class OfflineError(RuntimeError):
    """A published page still loads a script or stylesheet from the network."""


def _is_remote(url: str) -> bool:
    return re.match(r"\s*(?:https?:)?//", url, re.IGNORECASE) is not None


class _RemoteRefs(HTMLParser):
    """Collect ``<script src>`` and fetched ``<link href>`` values that point off-host."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.remote: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "script":
            url = a.get("src", "")
        elif tag == "link" and _FETCHED_RELS & set(a.get("rel", "").lower().split()):
            url = a.get("href", "")
        else:
            return
        if _is_remote(url):
            self.remote.append(url)

    handle_startendtag = handle_starttag


def remote_references(html: str) -> list[str]:
    """The ``http(s)://`` (or ``//``) scripts and stylesheets an HTML page loads."""
    parser = _RemoteRefs()
    parser.feed(html)
    parser.close()
    return parser.remote


def _rewrite(html: str, prefix: str, rewritten: list[str]) -> str:
    def tag(match: re.Match[str]) -> str:
        text = match.group(0)
        url_attr = _URL_ATTR.search(text)
        if url_attr is None or url_attr.group(3).strip() not in LOCAL:
            return text
        url = url_attr.group(3).strip()
        local = posixpath.join(prefix, "vendor", LOCAL[url]) if prefix else f"vendor/{LOCAL[url]}"
        text = text[: url_attr.start(3)] + local + text[url_attr.end(3) :]
        rewritten.append(url)
        return _DROP_ATTR.sub("", text)

    return _TAG.sub(tag, html)


def make_offline(html_dir: Path) -> list[str]:
    """Point an ``asv publish`` site's CDN scripts and stylesheets at vendored copies.

    Why: the benchmark site must render on cluster nodes with no internet.

    Copies ``vendor/`` (next to this module) to ``html_dir/vendor/`` and
    rewrites each ``.html`` file under ``html_dir`` (asv writes
    ``index.html`` and ``error.html``, both at the top level) so that every
    ``<script src>`` and ``<link href>`` naming a known CDN URL names the
    local copy instead, dropping its ``integrity``, ``crossorigin`` and
    ``referrerpolicy`` attributes. Running it again is harmless.

    Parameters
    ----------
    html_dir : Path
        The directory ``asv publish`` wrote (``html_dir`` in ``asv.conf.json``).

    Returns
    -------
    list of str
        The CDN URLs that were rewritten, in page order (``[]`` on a second run).

    Raises
    ------
    FileNotFoundError
        If ``html_dir`` has no ``index.html``.
    OfflineError
        If, after rewriting, a page still loads a script or stylesheet from an
        ``http(s)://`` address: an asv version whose pages name a CDN asset
        this module does not know fails here rather than going online.
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").is_file():
        raise FileNotFoundError(f"{html_dir} has no index.html; run `asv publish` first")
    shutil.copytree(
        VENDOR,
        html_dir / "vendor",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.py", "*.pyc"),
    )
    rewritten: list[str] = []
    leftovers: list[str] = []
    pages = sorted(p for p in html_dir.rglob("*.html") if "vendor" not in p.relative_to(html_dir).parts)
    for page in pages:
        depth = len(page.relative_to(html_dir).parts) - 1
        prefix = "/".join([".."] * depth)
        html = page.read_text(encoding="utf-8")
        new = _rewrite(html, prefix, rewritten)
        if new != html:
            page.write_text(new, encoding="utf-8")
        leftovers += [f"{page.relative_to(html_dir)}: {url}" for url in remote_references(new)]
    if leftovers:
        raise OfflineError(
            "these pages still load scripts or stylesheets from the network, which an offline "
            "site cannot; vendor them in lenskern/observatory/vendor/ and map them in "
            "lenskern.observatory.offline.LOCAL:\n  " + "\n  ".join(leftovers)
        )
    return rewritten

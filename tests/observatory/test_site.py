"""The published asv site renders in a real browser with no internet.

A tiny asv project (two benchmarks, two commits, two machines) is run and
published for real in a temporary directory, made offline with
``lenskern.observatory.offline.make_offline``, served on 127.0.0.1 and loaded
in headless Chromium whose resolver fails every host name, so any CDN fetch
would fail. The tests read the DOM Chromium leaves after the page's scripts
ran and Chromium's network log of the requests the page made.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lenskern import registry
from lenskern.observatory.offline import LOCAL, OfflineError, make_offline

MACHINES = ("lab-laptop", "lab-node")
BENCHMARKS = ("sums.time_sum", "sums.peakmem_list")
CDN_HOSTS = ("code.jquery.com", "cdnjs.cloudflare.com", "cdn.jsdelivr.net")
REMOTE_ASSET = re.compile(
    r"""<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE
)

# ---------------------------------------------------------------- the browser


def chromium() -> str:
    """Chromium's path, installing it with apt where it is missing and we are root."""
    found = shutil.which("chromium") or (Path("/usr/bin/chromium").exists() and "/usr/bin/chromium")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("Chromium is missing and cannot be installed here (needs apt-get as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], env=env, check=True, capture_output=True, timeout=900
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"Chromium is missing and `apt-get install -y chromium` failed: {e}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("`apt-get install -y chromium` gave no `chromium` on PATH")
    return found


@dataclass
class Page:
    """What Chromium left: the DOM after the scripts ran, and the requests made."""

    dom: Node
    html: str
    requests: list[tuple[str, str]]  # (url, initiator) for every request Chromium started

    def off_host(self, origin: str) -> list[str]:
        """Requests the page made (initiated by ``origin``) to anywhere but ``origin``,
        and any request at all to a CDN."""
        return [
            url
            for url, initiator in self.requests
            if (initiator == origin and not url.startswith((origin + "/", "data:", "blob:")))
            or any(f"//{host}" in url for host in CDN_HOSTS)
        ]


def load(browser: str, url: str, workdir: Path) -> Page:
    """Load ``url`` in headless Chromium with every host name unresolvable but 127.0.0.1."""
    workdir.mkdir(parents=True)
    netlog = workdir / "netlog.json"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={workdir / 'profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--log-net-log={netlog}",
        "--window-size=1280,900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0 and done.stdout.strip(), f"chromium failed on {url}:\n{done.stderr[-3000:]}"
    return Page(dom=parse(done.stdout), html=done.stdout, requests=requests_in(netlog))


def requests_in(netlog: Path) -> list[tuple[str, str]]:
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        (e["params"]["url"], e["params"].get("initiator", ""))
        for e in log["events"]
        if e["type"] == start_job and "url" in e.get("params", {})
    ]


# ---------------------------------------------------------------- a small DOM

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k) == v for k, v in attrs.items())
        ]

    def by_id(self, id_: str) -> Node:
        found = self.find_all(id=id_)
        assert len(found) == 1, f"{len(found)} elements with id {id_!r}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack = [Node("#document")]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.stack[0]


# ---------------------------------------------------------------- the server


class Served:
    """``directory`` served over HTTP on 127.0.0.1 in a thread; logs (path, status)."""

    def __init__(self, directory: Path) -> None:
        self.log: list[tuple[str, int]] = []
        log = self.log

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                log.append((self.path, int(getattr(code, "value", code))))

            def log_message(self, *args):
                pass

        handler = functools.partial(Handler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- the site

CONF = {
    "version": 1,
    "project": "tinyproj",
    "project_url": "",
    "repo": ".",
    "dvcs": "git",
    "branches": ["main"],
    "environment_type": "existing",
    "benchmark_dir": "benchmarks",
    "results_dir": "results",
    "html_dir": "html",
}

SUMS = '''\
"""Two benchmarks, quick to run, of the two kinds the site draws."""


def time_sum():
    sum(range(1000))


def peakmem_list():
    [0] * 10000
'''


def build_site(root: Path) -> Path:
    """Run and publish a tiny asv project for real; return its html directory."""
    project = root / "project"
    (project / "benchmarks").mkdir(parents=True)
    (project / "asv.conf.json").write_text(json.dumps(CONF, indent=2))
    (project / "benchmarks" / "__init__.py").write_text("")
    (project / "benchmarks" / "sums.py").write_text(SUMS)
    # HOME: asv keeps machine descriptions in ~/.asv-machine.json, git its config in ~.
    home = root / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), GIT_CONFIG_NOSYSTEM="1")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)

    def sh(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    git = (
        "git",
        "-c",
        "user.name=lenskern",
        "-c",
        "user.email=lenskern@localhost",
        "-c",
        "commit.gpgsign=false",
    )
    sh(*git, "init", "-q", "-b", "main")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-q", "-m", "two benchmarks")
    (project / "NOTES").write_text("a second commit\n")
    sh(*git, "add", "-A")
    sh(*git, "commit", "-q", "-m", "a second commit")
    commits = sh("git", "rev-list", "main").split()
    assert len(commits) == 2

    asv = (sys.executable, "-m", "asv")
    for machine in MACHINES:
        sh(*asv, "machine", "--machine", machine, "--yes")
        for commit in commits:
            sh(*asv, "run", "--python=same", "--quick", "--machine", machine, "--set-commit-hash", commit)
    sh(*asv, "publish")
    return project / "html"


@dataclass
class Site:
    html_dir: Path  # published, then made offline
    pristine: Path  # as asv published it
    rewritten: list[str]
    offline: Served
    online: Served
    browser: str
    scratch: Path

    def load(self, served: Served, path: str, name: str) -> Page:
        return load(self.browser, f"{served.origin}/{path}", self.scratch / name)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("asv", reason="the `bench` extra (asv) is not installed")
    browser = chromium()
    root = tmp_path_factory.mktemp("site")
    html_dir = build_site(root)
    pristine = root / "pristine"
    shutil.copytree(html_dir, pristine)
    rewritten = make_offline(html_dir)
    offline, online = Served(html_dir), Served(pristine)
    try:
        yield Site(html_dir, pristine, rewritten, offline, online, browser, root / "chromium")
    finally:
        offline.close()
        online.close()


# ---------------------------------------------------------------- the tests


def test_every_cdn_reference_is_rewritten_to_a_vendored_file(site):
    pristine = (site.pristine / "index.html").read_text()
    cdn_urls = re.findall(r"""<(?:script|link)\b[^>]*\b(?:src|href)="(https?://[^"]+)""", pristine)
    assert len(cdn_urls) >= 10
    assert sorted(site.rewritten) == sorted(cdn_urls)
    pages = sorted(site.html_dir.rglob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "error.html"}
    for page in pages:
        html = page.read_text()
        assert not REMOTE_ASSET.search(html), f"{page.name} still loads from the network"
        assert not re.search(r"\b(integrity|crossorigin|referrerpolicy)=", html)
    index = (site.html_dir / "index.html").read_text()
    for local in LOCAL.values():
        assert f'"vendor/{local}"' in index
        assert (site.html_dir / "vendor" / local).stat().st_size > 1000
    # Twice is harmless.
    assert make_offline(site.html_dir) == []


def test_unknown_cdn_asset_fails_loudly(site, tmp_path):
    shutil.copy(site.pristine / "index.html", tmp_path / "index.html")
    html = (tmp_path / "index.html").read_text()
    html = html.replace("</head>", '<script src="https://cdn.example.org/new-plugin.min.js"></script></head>')
    (tmp_path / "index.html").write_text(html)
    with pytest.raises(OfflineError, match="new-plugin"):
        make_offline(tmp_path)


def test_control_without_vendoring_the_blocked_browser_shows_the_error_page(site):
    # Proves the resolver rules bite: asv's own page, unvendored, cannot load.
    page = site.load(site.online, "index.html", "control")
    assert "airspeed velocity error" in page.dom.find_all("title")[0].text
    assert any("code.jquery.com" in url for url, _ in page.requests)
    assert not page.dom.find_all(cls="benchmark-container")


def test_summary_grid_renders_offline(site):
    page = site.load(site.offline, "index.html", "grid")
    # asv.js sets the title from index.json: its scripts ran and read the data
    assert page.dom.find_all("title")[0].text.strip() == "airspeed velocity of an unladen tinyproj"
    grid = page.dom.by_id("summarygrid-display")
    links = {a.attrs["href"]: a for a in grid.find_all("a", cls="benchmark-container")}
    assert set(links) == {f"#{name}" for name in BENCHMARKS}
    for name in BENCHMARKS:
        labels = [t.text.strip() for t in links[f"#{name}"].find_all("div", cls="benchmark-text")]
        assert labels == [registry.parse_name(name)[1]]
        # the thumbnail graph: flot drew into it from graphs/summary/<name>.json
        assert page.dom.by_id(f"summarygrid-{name}").find_all("canvas", cls="flot-base")
    assert [g.attrs["id"] for g in grid.find_all(cls="benchmark-group")] == ["group-sums"]

    assert page.off_host(site.offline.origin) == []
    served = dict(site.offline.log)
    assert all(status == 200 for status in served.values()), served
    for local in LOCAL.values():
        assert f"/vendor/{local}" in served


def test_graph_page_renders_offline_with_both_machines(site):
    page = site.load(site.offline, "index.html#sums.time_sum", "graph")
    # asv.js sets the title from index.json: its scripts ran and read the data
    assert page.dom.find_all("title")[0].text.strip() == "airspeed velocity of an unladen tinyproj"
    assert page.dom.by_id("title").text.strip() == "sums.time_sum"
    graph = page.dom.by_id("main-graph")
    assert graph.find_all("canvas", cls="flot-base")
    ticks = [t.text.strip() for t in graph.find_all("div", cls="flot-tick-label")]
    assert sum(bool(re.fullmatch(r"[\d.]+", t)) for t in ticks) >= 2, ticks
    assert page.dom.by_id("overview").find_all("canvas", cls="flot-base")

    nav = page.dom.by_id("graphdisplay-navigation")
    panels = {
        p.find_all(cls="panel-heading")[0].text.strip(): p
        for p in nav.find_all("div", cls="panel")
        if p.find_all(cls="panel-heading")
    }
    assert "machine" in panels, sorted(panels)
    buttons = {b.text.strip(): b for b in panels["machine"].find_all("a", cls="btn")}
    assert set(buttons) == set(MACHINES)
    assert all("active" in b.classes for b in buttons.values())

    assert page.off_host(site.offline.origin) == []
    fetched = [path for path, status in site.offline.log if status == 200]
    for machine in MACHINES:
        assert any(
            f"/machine-{machine}/" in p and p.split("?")[0].endswith("/sums.time_sum.json") for p in fetched
        )


# ---------------------------------------------------------------- lenskern's pages


def test_asv_graphs_open_on_a_log_axis_and_the_grid_draws_one_commit(site, tmp_path):
    from lenskern.observatory import landing

    edited = tmp_path / "html"
    shutil.copytree(site.html_dir, edited)
    landing.edit_asv_pages(edited)
    landing.edit_asv_pages(edited)  # twice is harmless
    for name, edits in landing.ASV_EDITS.items():
        text = (edited / name).read_text()
        assert all(text.count(new) == 1 for _, new in edits), name
    served = Served(edited)
    try:
        page = load(site.browser, f"{served.origin}/index.html#sums.time_sum", tmp_path / "log")
        assert "active" in page.dom.by_id("log-scale").classes  # log without asking
        linear = load(site.browser, f"{served.origin}/index.html#sums.time_sum?y-axis-scale=linear",
                      tmp_path / "linear")  # fmt: skip
        assert "active" not in linear.dom.by_id("log-scale").classes
    finally:
        served.close()
    # another asv's scripts: refused loudly, not published half edited
    (edited / "summarygrid.js").write_text("/* some other asv */")
    with pytest.raises(OfflineError, match="summarygrid.js"):
        landing.edit_asv_pages(edited)


def synthetic_results(results_dir: Path, machine: str) -> dict[str, list[str]]:
    """asv result files of one commit on two thread settings, every kernel
    with a few implementations (a peer among them), times spread over six
    decades; returns the implementations by kernel."""
    from lenskern.observatory import suite

    machine_dir = results_dir / machine
    machine_dir.mkdir(parents=True)
    (machine_dir / "machine.json").write_text(json.dumps({"machine": machine, "version": 1}))
    names = ["reference.direct", "numpy.vector", "numba.loop", "jax.scan", "autoarray.w_tilde"]
    implementations = {k: names for k in registry.NAMES}
    columns = ["result", "params", "version"]
    for threads in ("1", "all"):
        results = {}
        for number, kernel in enumerate(registry.NAMES):
            area, cls = suite.area(kernel), suite.class_name(kernel)
            timed = [n for n in names if threads == "1" or not n.startswith("reference.")]
            times = [10.0 ** (-6 + (number + i) % 6) * (1 if threads == "1" else 0.7) if n in timed else None
                     for i, n in enumerate(names)]  # fmt: skip
            params = [[repr(n) for n in names], ["'tiny'"]]
            results[f"{area}.{cls}.time_call"] = [times, params, "v"]
            profile = {"track_peak_bytes": [None, 0.0, 3 * 2**20, 2**31, 12288.0],
                       "track_first_call_seconds": [None, 0.01, 1.5, 0.4, 0.02],
                       "track_max_relative_error": [None, 1e-16, 2e-16, 3e-15, 1e-15]}  # fmt: skip
            for method, values in profile.items():
                results[f"{area}.{cls}{suite.PROFILE}.{method}"] = [
                    values if threads == "1" else [None] * len(names), params, "v"]  # fmt: skip
        (machine_dir / f"abcdef12-threads{threads}.json").write_text(json.dumps({
            "commit_hash": "abcdef1234567890", "date": 1_765_000_000_000, "version": 2,
            "env_vars": {"LENSKERN_NUM_THREADS": threads}, "result_columns": columns,
            "results": results}))  # fmt: skip
    return implementations


def test_the_landing_page_shows_every_kernels_table_and_log_chart(tmp_path):
    """lenskern's front page, built from results as the main job leaves
    them, in headless Chromium: a section per kernel with its table and a
    bar per implementation and thread setting, asv's own page moved beside
    it, and a screenshot whose pixels hold the bars' colours."""
    from PIL import Image

    from lenskern.observatory import landing

    browser = chromium()
    html_dir, results_dir = tmp_path / "html", tmp_path / "results"
    html_dir.mkdir()
    (html_dir / "index.html").write_text("<title>airspeed velocity of an unladen lenskern</title>")
    implementations = synthetic_results(results_dir, "lab-laptop")
    front = landing.write(html_dir, results_dir)
    assert front == html_dir / "index.html"
    assert "airspeed velocity" in (html_dir / landing.ASV_PAGE).read_text()
    landing.write(html_dir, results_dir)  # again: asv's page is not overwritten by ours
    assert "airspeed velocity" in (html_dir / landing.ASV_PAGE).read_text()

    served = Served(html_dir)
    try:
        page = load(browser, f"{served.origin}/index.html", tmp_path / "landing")
        shot = tmp_path / "landing.png"
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={tmp_path / 'shot-profile'}", "--window-size=1400,900",
                               f"--screenshot={shot}", f"{served.origin}/index.html"],
                              capture_output=True, text=True, timeout=90)  # fmt: skip
        assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    finally:
        served.close()
    assert page.off_host(served.origin) == []
    assert page.dom.find_all("title")[0].text == "lenskern benchmarks"
    sections = {s.attrs["id"]: s for s in page.dom.find_all("section", cls="kernel")}
    assert set(sections) == {f"{kernel}-tiny" for kernel in registry.NAMES}
    for kernel, names in implementations.items():
        section = sections[f"{kernel}-tiny"]
        rows = section.find_all("tbody")[0].find_all("tr")
        assert [r.find_all("td")[0].text.split(" peer")[0] for r in rows][0] in names
        assert len(rows) == len(names)
        # one bar per implementation and setting; the reference on one thread only
        assert len(section.find_all("rect", cls="bar")) == 2 * len(names) - 1
        assert section.find_all("a")[0].attrs["href"].startswith(landing.ASV_PAGE + "#")
        cells = " ".join(r.text for r in rows)
        assert "< 4 KiB" in cells and "2.0 GiB" in cells and "peer: PyAutoArray" in cells
    # the shot: the top of the page, with both settings' bars drawn
    pixels = Image.open(shot).convert("RGB")
    colours = {pixels.getpixel((x, y)) for x in range(pixels.width) for y in range(pixels.height)}
    for colour in landing.COLOURS.values():
        assert tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) in colours, colour

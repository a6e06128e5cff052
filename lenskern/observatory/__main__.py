"""The observatory's commands: ``python -m lenskern.observatory <command>``.

``run``      the main job: benchmark HEAD with asv at the small tier on one and
             on all threads, publish the offline site, print the tables.
``publish``  ``asv publish``, then make the site work with no internet.
``report``   print the tables of one commit from the results.
``serve``    serve the published site on 127.0.0.1 (``asv preview`` binds every
             interface).
``compare``  asv continuous of a base against a head on one pinned thread, by
             default each kernel's first choice and the backends the diff
             touched, counted under Valgrind and timed: exit 1 on a
             regression, 2 on a broken benchmark; writes a markdown report.
``regressions``  the published site's regressions as markdown; exit 1 if any.
``nightly``  benchmark tonight's commits of main: the tip alone on a machine
             with no results, then at most --cap pending commits a night,
             newest first, the rest left for the next nights.
``seeds``    the seeds' Match and Bonus rounds at their sizes, in their format,
             with lenskern's algorithms added, and a bar chart per table.
``machine``  name this machine for asv, with its GPU model.
``results``  ``checkout`` the results branch into .asv/results, or ``push`` it:
             every machine's results on one branch, for one site.
``measured`` compute's first choices against the fastest alternative, from the
             saved results of one commit: the README's "measured" table.
``peers``    lenskern's fastest against the fastest peer per kernel and tier,
             from the peers' saved results (asv.peers.conf.json): the README's
             "lenskern against what you run today" table.
``gpu-check``  the GPU runner's check, without asv: the environment, the GPU
             implementations against the reference, their transfers, kernel
             and device memory apart at seed-gpu and science beside the CPU
             on one thread and on all, as asv results and a markdown table in
             a folder; on Numba's simulator and JAX's CPU at tiny where there
             is no GPU.

Run from the repository root (where ``asv.conf.json`` is).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lenskern.__main__ import program_name
from lenskern.observatory import (
    alert,
    estimate,
    gpu_check,
    landing,
    machines,
    nightly,
    progress,
    regressions,
    seeds,
    suite,
    verdict,
)
from lenskern.observatory.offline import make_offline
from lenskern.observatory.report import measured_table, peers_table, report, results_by_threads

RESULTS = Path(".asv/results")
PEER_RESULTS = Path(".asv/peers/results")  # asv.peers.conf.json's results_dir
HTML = Path(".asv/html")
RUN_LOG = Path(".asv/run.log")  # the main job's asv output, line by line
MACHINE_HELP = f"this machine's name (default: ${machines.VARIABLE}, else the host name)"


def _step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _asv(*args: str, check: bool = True) -> int:
    """Run asv with this Python, its output streamed as it comes."""
    command = [sys.executable, "-m", "asv", *args]
    print("$ " + " ".join(["asv", *args]), flush=True)
    code = subprocess.call(command)
    if check and code != 0:
        raise SystemExit(f"asv {args[0]} failed with exit status {code}")
    return code


def _head() -> str:
    return subprocess.check_output(["git", "rev-parse", "HEAD"], text=True).strip()


def publish() -> Path:
    _step("publishing the site (asv publish), then vendoring its scripts for offline use")
    _asv("publish")
    rewritten = make_offline(HTML)
    print(f"rewired {len(rewritten)} CDN references to local copies", flush=True)
    landing.edit_asv_pages(HTML)
    return landing.write(HTML, RESULTS).resolve()


#: The main job leaves out the instruction counts (Valgrind, minutes on a
#: small machine): they are the regression alert's signal, which the PR check
#: and the nightly run; ``run --counts`` adds them.
WITHOUT_COUNTS = r"^(?!counts\.)"


def _estimate(machine: str, bench: str | None) -> tuple[float, str, dict[tuple[str, str], float]]:
    """The main job's asv run, estimated (lenskern.observatory.estimate): its
    seconds, what they rest on, and each benchmark's expected seconds on
    each thread setting (the progress bar's units)."""
    from asv.util import load_json

    config = load_json("asv.conf.json", js_comments=True)
    env_dir = Path(config.get("env_dir", ".asv/env"))
    built = env_dir.is_dir() and any(env_dir.iterdir())
    settings = estimate.thread_settings(config)
    return estimate.main_job(RESULTS, machine, Path(config["benchmark_dir"]), settings, built, bench)


def run(machine: str, tier: str, counts: bool = False) -> None:
    if not Path("asv.conf.json").exists():
        raise SystemExit("run from the repository root, where asv.conf.json is")
    tiers = suite.check_tiers([t for t in tier.split(",") if t], "--tier")  # before anything runs
    start = time.perf_counter()
    commit = _head()
    _step(f"machine {machine!r} (asv machine, with its GPU model)")
    machines.record(machine)
    if machines.join_history():
        print(f"results: every machine's history from the {machines.BRANCH} branch, in {RESULTS}", flush=True)
    os.environ[suite.TIERS_VARIABLE] = ",".join(tiers)
    # at its tiers only: asv keeps what this commit measured at others
    bench = suite.all_of(suite.tier_regex(tiers), None if counts else WITHOUT_COUNTS)
    seconds, basis, expected = _estimate(machine, bench)
    _step(
        f"benchmarking HEAD {commit[:8]} at the {tier} tier(s), LENSKERN_NUM_THREADS=1 and all: "
        f"about {max(1, round(seconds / 60))} minutes on this machine ({basis})"
    )
    code = progress.run_asv(["run", "HEAD^!", "--machine", machine, "--show-stderr", "-b", bench], RUN_LOG,
                            ("building the environment, discovering the suite", "benchmarks"),
                            expected)  # fmt: skip
    site = publish()
    _step("results")
    for each in tiers:
        print(report(RESULTS, machine, commit, each), flush=True)
    minutes = (time.perf_counter() - start) / 60
    print(f"\nsite: {site}  (serve it: python -m lenskern.observatory serve)", flush=True)
    print(f"done in {minutes:.1f} min", flush=True)
    if code != 0:
        raise SystemExit(f"asv run exited with status {code}: some benchmarks failed (above; all: {RUN_LOG})")


def nightly_job(machine: str, branch: str, cap: int, bench: str | None = None) -> None:
    """asv run of tonight's commits (lenskern.observatory.nightly.plan);
    ``bench``, asv's benchmark regex, narrows the suite."""
    from lenskern.observatory import counts as counting  # `run` names its flag `counts`

    tiers = suite.selected_tiers("small")  # before anything runs
    done = nightly.benchmarked(RESULTS, machine)
    tonight, pending = nightly.plan(nightly.branch_commits(branch), done, cap)
    if not tonight:
        print(f"every commit of {branch} has results on {machine!r}: nothing to benchmark", flush=True)
        return
    _step(f"benchmarking {len(tonight)} commit(s) of {branch} on {machine!r}, newest first; "
          f"{len(pending)} left pending for the next nights")  # fmt: skip
    for commit in tonight:
        print(f"  {commit[:8]}", flush=True)
    hashes = Path(".asv") / "nightly-commits.txt"
    hashes.parent.mkdir(exist_ok=True)
    hashes.write_text("\n".join(tonight) + "\n")
    selected = suite.all_of(suite.tier_regex(tiers), bench)
    if bench and counting.CALLS_VARIABLE not in os.environ:
        # Valgrind counts every call the counts benchmark takes as a
        # parameter (the 15 recommended ones took 182 s in the nightly
        # test's first night, commit f67ef23, the project's 2-core VM): a
        # narrowed suite counts those its regex selects
        os.environ[counting.CALLS_VARIABLE] = ",".join(suite.counted_calls(counting.calls(), selected))
    code = _asv("run", f"HASHFILE:{hashes}", "--machine", machine, "--show-stderr", "--record-samples",
                "--bench", selected, check=False)  # fmt: skip
    if code != 0:
        raise SystemExit(f"asv run exited with status {code}: some benchmarks failed (see above)")


SEEDS = Path(".asv/seeds")


def seeds_job(machine: str, tiers: list[str]) -> None:
    """Benchmark HEAD's Match and Bonus round kernels at the seeds' tiers.

    Results go to a folder of their own, the seeds' tables and charts beside
    them, so the main job's site stays the main job's; the virtualenv is the
    main job's.
    """
    from asv.util import load_json

    if not Path("asv.conf.json").exists():
        raise SystemExit("run from the repository root, where asv.conf.json is")
    unknown = [t for t in tiers if t not in {tier for tier, _ in seeds.ROUNDS.values()}]
    if unknown:
        raise SystemExit(f"--tiers: {unknown} are not seed tiers; expected seed-1core and/or seed-gpu")
    start = time.perf_counter()
    commit = _head()
    conf = load_json("asv.conf.json", js_comments=True)
    root = Path.cwd()
    conf.update(repo=str(root), benchmark_dir=str(root / conf["benchmark_dir"]),
                env_dir=str(root / conf["env_dir"]), results_dir=str(root / SEEDS / "results"),
                html_dir=str(root / SEEDS / "html"))  # fmt: skip
    SEEDS.mkdir(parents=True, exist_ok=True)
    config = SEEDS / "asv.conf.json"
    config.write_text(json.dumps(conf, indent=2))
    _step(f"machine {machine!r} (asv machine)")
    _asv("machine", "--yes", "--machine", machine, "--config", str(config))
    kernels = {k for tier, ks in seeds.ROUNDS.values() if tier in tiers for k in ks}
    os.environ[suite.TIERS_VARIABLE] = ",".join(tiers)
    _step(f"benchmarking HEAD {commit[:8]} at {', '.join(tiers)}, one thread and all: seconds per "
          "call, minutes in all (the direct sums that took the seeds hours are skipped)")  # fmt: skip
    bench = suite.all_of(suite.time_regex(kernels), suite.tier_regex(tiers))
    code = _asv("run", "HEAD^!", "--machine", machine, "--show-stderr", "--config", str(config),
                "-b", bench, check=False)  # fmt: skip
    _step("the seeds' tables")
    by_threads = results_by_threads(SEEDS / "results", machine, commit)
    print(seeds.tables(dict.fromkeys(tiers, by_threads), SEEDS), flush=True)
    print(f"\ntables and charts: {(SEEDS / 'seeds.md').resolve()}", flush=True)
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if code != 0:
        raise SystemExit(f"asv run exited with status {code}: some benchmarks failed (see above)")


def measured(machine: str, commit: str, tier: str, readme: Path | None) -> None:
    """Print the table of measured ratios, or rewrite it inside ``readme``."""
    by_threads = results_by_threads(RESULTS, machine, commit)
    if "1" not in by_threads:
        raise SystemExit(f"no one-thread results for commit {commit[:8]} on machine {machine!r} in {RESULTS}")
    _table_out(measured_table(by_threads, machine, commit, tier), readme, "measured")


def peers(machine: str, commit: str, tiers: list[str], readme: Path | None) -> None:
    """Print lenskern against the peers, or rewrite that table inside ``readme``."""
    by_threads = results_by_threads(PEER_RESULTS, machine, commit)
    if "1" not in by_threads:
        raise SystemExit(
            f"no one-thread results for commit {commit[:8]} on machine {machine!r} in {PEER_RESULTS}: "
            "run asv with --config asv.peers.conf.json (README, Peers)"
        )
    _table_out(peers_table(dict.fromkeys(tiers, by_threads), machine, commit), readme, "peers")


def _table_out(text: str, readme: Path | None, marker: str) -> None:
    """Print ``text``, or put it between ``readme``'s ``<!-- marker:begin/end -->``."""
    if readme is None:
        print(text)
        return
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    old = readme.read_text()
    if begin not in old or end not in old:
        raise SystemExit(f"{readme} has no {begin} ... {end} markers")
    head, rest = old.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
    print(f"{readme}: {marker} table rewritten; {text.splitlines()[0]}")


def serve(port: int) -> None:
    if not (HTML / "index.html").exists():
        raise SystemExit(f"no site at {HTML}: run `python -m lenskern.observatory publish` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving {HTML} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
        server.serve_forever()


def _write_report(text: str, path: Path | None) -> None:
    """Print the markdown, write it to ``path``, and append it to the GitHub
    job summary when running in Actions."""
    print(text, flush=True)
    if path is not None:
        path.write_text(text + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as handle:
            handle.write(text + "\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free one), got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def _report(results: Path, machine: str, commit: str, tier: str) -> str:
    if not results_by_threads(results, machine, commit):
        known = sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []
        raise SystemExit(
            f"no results for commit {commit[:8]} on machine {machine!r} in {results} "
            f"(machines there: {', '.join(known) or 'none'})"
        )
    return report(results, machine, commit, tier)


def main(argv: list[str] | None = None) -> None:
    """The command line; bad input ends in one line on stderr and a non-zero exit."""
    prog = program_name("lenskern.observatory", "lenskern-observatory")
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    try:
        _main(parser, argv)
    except (ValueError, RuntimeError, OSError) as error:
        command = (argv if argv is not None else sys.argv[1:])[:1]
        print(f"{parser.prog} {' '.join(command)}: error: {error}".replace("  ", " "), file=sys.stderr)
        raise SystemExit(1) from None


def _main(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="the main job")
    run_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    run_parser.add_argument("--tier", default="small", help="size tier(s), comma-separated (default: small)")
    run_parser.add_argument(
        "--counts", action="store_true", help="also the instruction counts (Valgrind; minutes)"
    )
    commands.add_parser("publish", help="asv publish, then make the site work offline")
    report_parser = commands.add_parser("report", help="print the tables of one commit")
    report_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    report_parser.add_argument("--commit", default=None, help="default: HEAD")
    report_parser.add_argument("--tier", default="small")
    report_parser.add_argument(
        "--results", type=Path, default=RESULTS, help=f"asv's results ({RESULTS}; the peers': {PEER_RESULTS})"
    )
    serve_parser = commands.add_parser("serve", help="serve the site on 127.0.0.1")
    serve_parser.add_argument("--port", type=_port, default=8080)
    compare_parser = commands.add_parser("compare", help="asv continuous base..head, pinned")
    compare_parser.add_argument("base")
    compare_parser.add_argument("head")
    compare_parser.add_argument("--factor", type=float, default=verdict.TIME_FLOOR,
                                help="least ratio a timing must exceed (1.10)")  # fmt: skip
    compare_parser.add_argument("--bench", "-b", default=None,
                                help="asv's benchmark regex (default: each kernel's first choice and the "
                                "backends the diff touched, counted and timed at small)")  # fmt: skip
    compare_parser.add_argument("--require-counts", action="store_true",
                                help="exit 2 when a selected call has no instruction count")  # fmt: skip
    compare_parser.add_argument("--threads", default="1", help="LENSKERN_NUM_THREADS (1)")
    compare_parser.add_argument("--machine", default=None)
    compare_parser.add_argument("--config", type=Path, default=Path("asv.conf.json"))
    compare_parser.add_argument("--report", type=Path, default=None, help="write the markdown here")
    nightly_parser = commands.add_parser("nightly", help="benchmark tonight's commits of main")
    nightly_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    nightly_parser.add_argument("--branch", default="main")
    nightly_parser.add_argument("--cap", type=int, default=nightly.CAP,
                                help=f"commits per night ({nightly.CAP})")  # fmt: skip
    nightly_parser.add_argument("--bench", "-b", default=None, help="asv's benchmark regex (default: all)")
    regressions_parser = commands.add_parser("regressions", help="published regressions")
    regressions_parser.add_argument("--report", type=Path, default=None)
    measured_parser = commands.add_parser("measured", help="the README's table of measured ratios")
    measured_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    measured_parser.add_argument("--commit", default=None, help="default: HEAD")
    measured_parser.add_argument("--tier", default="small")
    measured_parser.add_argument("--readme", type=Path, default=None, help="rewrite the table in this README")
    peers_parser = commands.add_parser("peers", help="the README's table of lenskern against the peers")
    peers_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    peers_parser.add_argument("--commit", default=None, help="default: HEAD")
    peers_parser.add_argument("--tier", default="seed-1core,science", help="comma list (seed-1core,science)")
    peers_parser.add_argument("--readme", type=Path, default=None, help="rewrite the table in this README")
    machine_parser = commands.add_parser("machine", help="name this machine for asv, with its GPU model")
    machine_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    machine_parser.add_argument("--gpu", default=None, help="the GPU model (default: from nvidia-smi)")
    results_parser = commands.add_parser("results", help="the results branch: checkout or push")
    results_parser.add_argument("action", choices=["checkout", "push"])
    results_parser.add_argument("--message", default="benchmark results", help="the commit message of push")
    seeds_parser = commands.add_parser("seeds", help="the seeds' Match and Bonus rounds, tables and charts")
    seeds_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    seeds_parser.add_argument("--tiers", default="seed-1core,seed-gpu",
                              help="comma list of seed-1core, seed-gpu (default: both)")  # fmt: skip
    gpu_parser = commands.add_parser("gpu-check", help="the GPU runner's check (the simulator without a GPU)")
    gpu_parser.add_argument("out", type=Path, help="folder for the results: asv's files and gpu-check.md")
    gpu_parser.add_argument(
        "--tier", default=None, help="comma list (default: seed-gpu,science on a GPU, tiny on the simulator)"
    )
    gpu_parser.add_argument("--simulator", action="store_true", help="the simulator's path even on a GPU")
    gpu_parser.add_argument(
        "--budget",
        type=_seconds,
        default=gpu_check.BUDGET_SECONDS,
        help=f"seconds the whole check may take ({gpu_check.BUDGET_SECONDS:.0f})",
    )
    gpu_parser.add_argument("--machine", default=machines.default_name(), help=MACHINE_HELP)
    gpu_parser.add_argument("--commit", default=None, help="file the results under (default: HEAD)")
    args = parser.parse_args(argv)
    if args.command == "gpu-check":
        tiers = [t for t in args.tier.split(",") if t] if args.tier else None
        raise SystemExit(gpu_check.check(args.out, tiers, True if args.simulator else None, args.budget,
                                         args.machine, args.commit))  # fmt: skip
    if args.command == "seeds":
        seeds_job(args.machine, [t for t in args.tiers.split(",") if t])
        return
    if args.command == "compare":
        code, text = alert.compare(args.base, args.head, args.factor, args.bench, args.threads,
                                   config=args.config, machine=args.machine,
                                   require_counts=args.require_counts)  # fmt: skip
        _write_report(text, args.report)
        raise SystemExit(code)
    if args.command == "regressions":
        count, text = regressions.regressions(HTML)
        _write_report(text, args.report)
        raise SystemExit(1 if count else 0)
    if args.command == "nightly":
        nightly_job(args.machine, args.branch, args.cap, args.bench)
    elif args.command == "run":
        run(args.machine, args.tier, args.counts)
    elif args.command == "publish":
        print(f"site: {publish()}")
    elif args.command == "report":
        print(_report(args.results, args.machine, args.commit or _head(), args.tier))
    elif args.command == "serve":
        serve(args.port)
    elif args.command == "machine":
        print(json.dumps(machines.record(args.machine, args.gpu), indent=2))
    elif args.command == "results" and args.action == "checkout":
        print(f"results: {machines.checkout()} (branch {machines.BRANCH})")
    elif args.command == "results":
        pushed = machines.push(args.message)
        print(f"pushed to {machines.BRANCH}" if pushed else "no new results to push")
    elif args.command == "measured":
        measured(args.machine, args.commit or _head(), args.tier, args.readme)
    elif args.command == "peers":
        peers(args.machine, args.commit or _head(), [t for t in args.tier.split(",") if t], args.readme)


if __name__ == "__main__":
    main()

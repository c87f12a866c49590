"""aggregator against lemon24/reader on the same local workload, side by side.

    python bench/vs_reader.py [--feeds 200] [--entries 50] [--tools aggregator,reader] [--runs 5]

Four scenarios, each run by both tools in the same run, each tool's refresh in its own
subprocess (so the two never share a heap, and ru_maxrss is that tool's own peak):

1. first:     the first refresh, into an empty store;
2. not-mod:   a second refresh, the server answering 304 to the validators;
3. same-body: a second refresh, the server ignoring validators and sending the same bytes;
4. one-new:   a third refresh, every feed with one new post on top (and its oldest gone):
              each body is new, so both tools read every feed, but one entry in 50 is new.

Printed per scenario and tool: wall time of the refresh call, entries per second (entries in
the workload / wall time) and peak RSS (the process and, for aggregator, its worker
processes); then the ratio aggregator / reader of entries per second.

The two no-change scenarios (all 304, same bytes) are then timed again as a cron job pays for
them: `aggregator refresh --all -c CONFIG` run as a process, from its start to its exit (the
interpreter, the imports, the refresh and the printed summary), once with stdout and stderr a
pipe and once on a pseudo-terminal (where it shows its progress bar and the rich table). Beside
it, reader's in-process update of the same feeds (`update_feeds_iter`, the call alone) and the
whole process that makes it. Each is run `--runs` times, interleaved; printed: the median wall
time and its range, the median CPU time (user and system, the process and its children: less
disturbed by other load than wall time), and the ratios of aggregator's process to reader's
in-process update (lower is better). Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate, serving

WORKERS = 16  # fetch threads, the same for both tools
SCENARIOS = (  # name, label, server mode, posts published since the first refresh
    ("first", "first refresh, empty store", "conditional", 0),
    ("not-mod", "second refresh, all 304", "conditional", 0),
    ("same-body", "second refresh, same bytes", "ignore", 0),
    ("one-new", "third refresh, one new each", "ignore", 1),
)
NO_CHANGE = ("not-mod", "same-body")  # also timed as a process, as cron runs them


# --- the refresh, in a subprocess ------------------------------------------------------------


def run_aggregator(workdir: Path, urls: list[str]) -> dict[str, object]:
    from aggregator.config import load_config
    from aggregator.refresh import refresh

    config_path = workdir / "config.toml"
    if not config_path.exists():
        lines = [
            "[feed]",
            'title = "Bench"',
            'link = "https://bench.example.org/"',
            "max_entries = 100",
            "[output]",
            'dir = "public"',
            "[store]",
            'path = "aggregator.db"',
            "[fetch]",
            f"max_workers = {WORKERS}",
            f"per_host = {WORKERS}",  # every feed is on 127.0.0.1
        ]
        for i, url in enumerate(urls):
            lines += ["[[sources]]", f'name = "feed{i}"', f'url = "{url}"', 'kind = "feed"']
        config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = load_config(config_path)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    report = refresh(config, force=True)
    seconds = time.perf_counter() - t0
    failed = [f"{r.source}: {r.error}" for r in report.failed]
    return {
        "seconds": seconds,
        "new": sum(r.new + r.joined for r in report.results),
        "errors": failed[:3],
        "cpu_refresh": _cpu() - cpu0,
    }


def run_reader(workdir: Path, urls: list[str]) -> dict[str, object]:
    from reader import make_reader

    reader = make_reader(str(workdir / "reader.sqlite"))
    for url in urls:
        reader.add_feed(url, exist_ok=True)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    results = list(reader.update_feeds_iter(workers=WORKERS, scheduled=False))
    seconds = time.perf_counter() - t0
    errors = [f"{r.url}: {r.error}" for r in results if r.error is not None]
    new = sum(r.updated_feed.new for r in results if r.updated_feed is not None)
    reader.close()
    return {"seconds": seconds, "new": new, "errors": errors[:3], "cpu_refresh": _cpu() - cpu0}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the parse workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def child(tool: str, workdir: str, urls_file: str) -> None:
    urls = json.loads(Path(urls_file).read_text())
    os.chdir(workdir)
    run = run_aggregator if tool == "aggregator" else run_reader
    out = run(Path(workdir), urls)
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Linux: KiB; the largest worker's peak, if any, on top (shared pages counted twice)
    out["maxrss_mb"] = (own.ru_maxrss + kids.ru_maxrss) / 1024
    out["cpu"] = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    print(json.dumps(out))


# --- the no-change refreshes as whole processes -----------------------------------------------

# reader's update in a fresh interpreter: prints the update call's wall and CPU seconds.
READER_PROCESS = """
import sys, time
from reader import make_reader
reader = make_reader(sys.argv[1])
t0, c0 = time.perf_counter(), time.process_time()
results = list(reader.update_feeds_iter(workers=int(sys.argv[2]), scheduled=False))
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
reader.close()
errors = [r for r in results if r.error is not None]
print(seconds, cpu, len(errors))
"""

Timing = tuple[float, float]  # wall seconds, CPU seconds


def aggregator_command(config: Path) -> list[str]:
    """The command a crontab holds: the console script when installed, else `python -m`."""
    script = Path(sys.executable).with_name("aggregator")
    head = [str(script)] if script.exists() else [sys.executable, "-m", "aggregator"]
    return [*head, "refresh", "--all", "-c", str(config)]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_pipe(argv: list[str], cwd: Path) -> Timing:
    """A process whose stdout and stderr are pipes (as under cron), start to exit."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}:\n{proc.stderr[-3000:].decode()}")
    return seconds, cpu


def time_tty(argv: list[str], cwd: Path) -> Timing:
    """A process on a pseudo-terminal of 120 columns (as a person runs it), start to exit."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(follower)
    while True:  # drain the terminal, or the child blocks on a full one
        try:
            if not os.read(leader, 1 << 16):
                break
        except OSError:  # the child closed its end
            break
    code = proc.wait()
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - c0
    os.close(leader)
    if code != 0:
        raise SystemExit(f"{argv} exited {code} on a terminal")
    return seconds, cpu


def time_reader(workdir: Path) -> tuple[Timing, Timing]:
    """reader's update in a fresh process: the update call, and the whole process."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", READER_PROCESS, str(workdir / "reader.sqlite"), str(WORKERS)],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    whole = (time.perf_counter() - t0, _children_cpu() - c0)
    if proc.returncode != 0:
        raise SystemExit(f"reader failed:\n{proc.stderr[-3000:]}")
    seconds, cpu, errors = proc.stdout.split()
    if int(errors):
        raise SystemExit(f"reader: {errors} feeds failed")
    return (float(seconds), float(cpu)), whole


def process_runs(tmp: Path, tools: list[str], runs: int) -> dict[str, list[Timing]]:
    """Each timing `runs` times, interleaved so that other load weighs on all alike."""
    times: dict[str, list[Timing]] = {}
    command = aggregator_command(tmp / "aggregator" / "config.toml")
    for _ in range(runs):
        if "reader" in tools:
            update, whole = time_reader(tmp / "reader")
            times.setdefault("reader update, in-process", []).append(update)
            times.setdefault("reader, whole process", []).append(whole)
        if "aggregator" in tools:
            times.setdefault("aggregator refresh, pipe", []).append(
                time_pipe(command, tmp / "aggregator")
            )
            try:
                timing = time_tty(command, tmp / "aggregator")
            except OSError:  # no pseudo-terminals here
                continue
            times.setdefault("aggregator refresh, terminal", []).append(timing)
    return times


def print_process_runs(label: str, times: dict[str, list[Timing]]) -> None:
    """Median wall time [range] and median CPU time (which other load disturbs less); for
    aggregator, each as a ratio to reader's update."""
    base = times.get("reader update, in-process")
    for what, values in times.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        low, high = min(w for w, _ in values), max(w for w, _ in values)
        ratio = ""
        if base and what.startswith("aggregator"):
            base_wall = statistics.median(w for w, _ in base)
            base_cpu = statistics.median(c for _, c in base)
            ratio = f"  {wall / base_wall:5.2f}x reader's update ({cpu / base_cpu:.2f}x CPU)"
        print(
            f"{label:<28} {what:<30} {wall:6.2f} s [{low:.2f}-{high:.2f}] {cpu:6.2f} s CPU{ratio}",
            flush=True,
        )


# --- the orchestration -----------------------------------------------------------------------


def measure(tool: str, workdir: Path, urls_file: Path) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", tool, str(workdir), str(urls_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tool} failed:\n{proc.stderr[-3000:]}")
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--tools", default="aggregator,reader")
    parser.add_argument(
        "--runs", type=int, default=5, help="runs of each no-change process timing (default: 5)"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    tools = [t for t in args.tools.split(",") if t]
    total = args.feeds * args.entries
    bodies = generate(args.feeds, args.entries)
    size = sum(len(b) for b in bodies.values())
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (other work slows both tools)")
    print(
        f"workload: {args.feeds} feeds x {args.entries} entries = {total} entries, "
        f"{size / 1e6:.1f} MB ({size / len(bodies) / 1024:.0f} KB per feed); "
        f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    results: dict[tuple[str, str], dict[str, object]] = {}
    processes: dict[str, dict[str, list[Timing]]] = {}
    with tempfile.TemporaryDirectory(prefix="vs-reader-") as tmp, serving(bodies) as server:
        urls_file = Path(tmp) / "urls.json"
        urls_file.write_text(json.dumps(server.urls()))
        for tool in tools:
            (Path(tmp) / tool).mkdir()
        for scenario, label, mode, newer in SCENARIOS:
            server.mode = mode
            if newer:
                server.publish(generate(args.feeds, args.entries, newer=newer))
            for tool in tools:
                r = measure(tool, Path(tmp) / tool, urls_file)
                results[(scenario, tool)] = r
                seconds = float(r["seconds"])  # type: ignore[arg-type]
                errs = f"  errors: {r['errors']}" if r["errors"] else ""
                print(
                    f"{label:<28} {tool:<11} {seconds:8.2f} s {total / seconds:10.0f} entries/s "
                    f"{float(r['maxrss_mb']):7.0f} MB peak "  # type: ignore[arg-type]
                    f"{float(r['cpu_refresh']):7.2f} s CPU  new={r['new']}{errs}",  # type: ignore[arg-type]
                    flush=True,
                )
            if scenario in NO_CHANGE and args.runs > 0:
                processes[label] = process_runs(Path(tmp), tools, args.runs)
                print_process_runs(label, processes[label])
    if set(tools) >= {"aggregator", "reader"}:
        print("ratios aggregator / reader (entries per second, higher is better):")
        for scenario, label, _, _ in SCENARIOS:
            a = float(results[(scenario, "aggregator")]["seconds"])  # type: ignore[arg-type]
            b = float(results[(scenario, "reader")]["seconds"])  # type: ignore[arg-type]
            print(f"  {label:<28} {b / a:8.1f}x")
    if processes:
        argv = aggregator_command(Path("CONFIG"))
        head = "aggregator" if argv[0].endswith("aggregator") else "python -m aggregator"
        shown = " ".join([head, *argv[argv.index("refresh") :]])
        print(f"the no-change refresh as a process ({shown}), median of {args.runs} runs:")
        for label, times in processes.items():
            print_process_runs(label, times)


if __name__ == "__main__":
    main()

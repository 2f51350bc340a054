"""The benchmark, one command: harvester `run` vs img2dataset, the CPU floor, and scale.

Input: command-line options (see --help). Output: a table on stdout, the raw and summarised
results in `bench/results/<UTC timestamp>.json`, and the exact command to reproduce them.

    python3 bench/harness.py            # full: 2,000 images, 3 alternating repetitions
    python3 bench/harness.py --quick    # smoke test: 300 images, 1 repetition, small scale set

Run with any Python >= 3.10: the first run creates `bench/.cache/venv` (img2dataset and the
photo sources live only there; harvester is installed into it with `pip install -e <repo>`)
and re-executes itself inside it. Then it makes the corpus (cached), starts the image server
(its own process, 127.0.0.1 only, 20–50 ms per request), and runs, alternating the order each
repetition so machine drift hits every contender alike:

  (a) img2dataset on the URL list: download + resize to 256 px, 2 processes x 64 threads;
  (b) `harvester run` on generated articles referencing the same images (reported as "not
      available" until the command exists), verified against what the server sent; once with
      its defaults (WebP thumbnails) and once with JPEG thumbnails, the output img2dataset
      writes (`--skip harvester-jpeg` leaves that one out);
  (c) the CPU floor (cpu_floor.py): decode + thumbnail + hash from disk on all cores;
  (d) fetch CPU seconds per image and connections (harvester's --json summary; the server's
      own connection count for both contenders);
  (e) `harvester run` over 10,000 articles / 100,000 references, then a no-op re-run: wall
      time and peak RSS.
Every number is the median of the repetitions; ratios are of medians (paired ratios too).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
VENV = CACHE / "venv"
VENV_BIN = VENV / "bin"
REQUIREMENTS = BENCH / "requirements-harness.txt"
RESULTS = BENCH / "results"
MARKER = VENV / ".harness-installed"

# What the issue accepts (reported as pass/fail beside the numbers, never asserted).
ACCEPT_RATIO = 1.0
LIKE_FOR_LIKE = "harvester-jpeg"  # harvester with --thumbnail-format jpeg
ACCEPT_FLOOR_SHARE = 0.70
ACCEPT_RSS_MB = 400
ACCEPT_NOOP_S = 10.0


# --------------------------------------------------------------------------- bootstrap


def _install_fingerprint() -> str:
    h = hashlib.sha256()
    for path in (REQUIREMENTS, ROOT / "pyproject.toml"):
        h.update(path.read_bytes())
    return h.hexdigest()


def ensure_venv() -> None:
    """Create/refresh bench/.cache/venv; install img2dataset etc. and harvester (-e)."""
    if not (VENV_BIN / "python").exists():
        print(f"harness: creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    fingerprint = _install_fingerprint()
    if MARKER.is_file() and MARKER.read_text() == fingerprint:
        return
    print("harness: installing the bench requirements into the venv ...", file=sys.stderr)
    pip = [str(VENV_BIN / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    subprocess.run([*pip, "-e", str(ROOT)], check=True)
    MARKER.write_text(fingerprint)


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- measuring


@dataclass
class Measured:
    cmd: list[str]
    returncode: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_mb: float  # largest single process of the tree (wait4's ru_maxrss)
    tree_peak_rss_mb: float  # sum over the process tree, sampled every 50 ms
    stdout: str
    stderr_tail: str
    timed_out: bool
    # CPU of every process seen in the tree (last sample per pid). wait4 only counts
    # descendants their own parents reaped: a multiprocessing forkserver's workers are not,
    # so for harvester wait4 alone saw only the main process.
    tree_cpu_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return max(self.cpu_user_s + self.cpu_sys_s, self.tree_cpu_s)


def run_measured(cmd: list[str], cwd: Path, env: dict, timeout: float) -> Measured:
    """Run `cmd`, timing it and its children's CPU and memory; kill the group on timeout."""
    import psutil

    out_path, err_path = cwd / "_stdout.txt", cwd / "_stderr.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True
        )
        timed_out = False
        peak_tree = 0
        cpu_seen: dict[int, float] = {}
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            root = None
        while True:
            try:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            except BaseException:  # Ctrl-C: leave no contender running behind us
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise
            if pid:
                break
            if root is not None:
                try:
                    rss = root.memory_info().rss
                    times = root.cpu_times()
                    cpu_seen[root.pid] = times.user + times.system
                    for child in root.children(recursive=True):
                        with contextlib.suppress(psutil.Error):  # it may just have exited
                            rss += child.memory_info().rss
                            times = child.cpu_times()
                            cpu_seen[child.pid] = times.user + times.system
                    peak_tree = max(peak_tree, rss)
                except psutil.Error:
                    pass
            if not timed_out and time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group
            try:
                time.sleep(0.05)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                raise
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    return Measured(
        cmd=cmd,
        returncode=proc.returncode,
        wall_s=wall,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024,
        tree_peak_rss_mb=peak_tree / 2**20,
        stdout=out_path.read_text(errors="replace"),
        stderr_tail="\n".join(stderr.strip().splitlines()[-15:]),
        timed_out=timed_out,
        tree_cpu_s=sum(cpu_seen.values()),  # each process's last sample (misses ≤ 50 ms each)
    )


class ServerProcess:
    """bench/image_server.py in its own process, and a tiny client for its counters."""

    def __init__(self, corpus: Path, latency: str, env: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "image_server.py"), "--corpus", str(corpus),
             "--latency-ms", latency],
            stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise SystemExit(f"harness: image server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _get(self, path: str) -> dict:
        with self._opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        self._get("/__reset")

    def stats(self) -> dict:
        return self._get("/__stats")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- machine


def describe_machine() -> dict:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
    }


def bench_env() -> dict:
    """The environment for every child: no proxies (all traffic is 127.0.0.1), venv first."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    # Installed packages run from compiled bytecode; an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1 (set on some dev machines) would recompile every changed
    # module at every start (~0.07 s a run here). `compile_sources` compiles it once.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost,.bench.test"
    env["NO_ALBUMENTATIONS_UPDATE"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def compile_sources(env: dict) -> None:
    """Byte-compile harvester's packages, as `pip install` does for an installed package."""
    folders = [str(ROOT / name) for name in ("harvester", "mirror")]
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", *folders],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------- the runs


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_download(
    contender,
    rep: int,
    server: ServerProcess,
    names: list[str],
    scratch_root: Path,
    env: dict,
    timeout: float,
) -> dict:
    from contenders import (
        CONNECTIONS_PATHS,
        FETCH_CPU_PATHS,
        PROCESS_WALL_PATHS,
        find_number,
        parse_json_summary,
    )

    scratch = scratch_root / f"{contender.name}-{rep}"
    prep = contender.prepare(scratch, server.port, names)
    server.reset()
    m = run_measured(prep.cmd, prep.cwd, env, timeout)
    served = server.stats()
    ver = contender.verify(prep, served["per_path"])
    summary = parse_json_summary(m.stdout) if contender.name.startswith("harvester") else None
    record = {
        "contender": contender.name,
        "rep": rep,
        "cmd": shlex.join(prep.cmd),
        "returncode": m.returncode,
        "timed_out": m.timed_out,
        "wall_s": round(m.wall_s, 3),
        "cpu_s": round(m.cpu_s, 3),
        "cpu_s_wait4": round(m.cpu_user_s + m.cpu_sys_s, 3),
        "cpu_s_tree_sampled": round(m.tree_cpu_s, 3),
        "images_verified": ver.ok,
        "images_expected": ver.expected,
        "complete": ver.complete,
        "problems": ver.problems,
        "problem_count": ver.problem_count,
        "images_per_s": round(ver.ok / m.wall_s, 2) if m.wall_s else None,
        "cpu_s_per_image": round(m.cpu_s / ver.ok, 5) if ver.ok else None,
        "max_rss_mb": round(m.max_rss_mb, 1),
        "tree_peak_rss_mb": round(m.tree_peak_rss_mb, 1),
        "server_requests": served["image_responses"] + served["not_found"],
        "server_connections": served["connections_opened"],
        "server_peak_open_connections": served["peak_open_connections"],
        "server_bytes": served["bytes_sent"],
        "server_cpu_ms_per_request": round(
            1000 * served["server_cpu_seconds"] / max(1, served["image_responses"]), 3
        ),
        "info": prep.info,
        "details": ver.details,
    }
    if summary is not None:
        record["summary"] = summary
        cpu = find_number(summary, FETCH_CPU_PATHS)
        record["fetch_cpu_s_per_image"] = round(cpu / ver.ok, 5) if cpu and ver.ok else None
        record["harvester_connections"] = find_number(summary, CONNECTIONS_PATHS)
        pwall = find_number(summary, PROCESS_WALL_PATHS)
        record["process_images_per_s"] = round(ver.ok / pwall, 2) if pwall and ver.ok else None
    if m.returncode != 0:
        record["stderr_tail"] = m.stderr_tail
    return record  # its scratch folder is deleted at the end of main(), not here


def run_floor(
    rep: int, corpus: Path, count: int, impl: str, scratch_root: Path, env: dict, timeout: float
) -> dict:
    scratch = scratch_root / f"floor-{rep}"
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(BENCH / "cpu_floor.py"), str(corpus), "--count", str(count),
           "--impl", impl]  # fmt: skip
    m = run_measured(cmd, scratch, env, timeout)
    try:
        result = json.loads(m.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        result = {"error": m.stderr_tail}
    return {
        "contender": "cpu-floor",
        "rep": rep,
        "cmd": shlex.join(cmd),
        "returncode": m.returncode,
        "cpu_s": round(m.cpu_s, 3),
        **result,
    }


def run_large(
    harvester, rep: int, server: ServerProcess, args, scratch_root: Path, env: dict
) -> dict:
    """First run over the scale set, then a no-op re-run over the same (rewritten) folder."""
    scratch = scratch_root / f"large-{rep}"
    prep = harvester.prepare_large(
        scratch, server.port, args.large_articles, args.refs_per_article, args.large_unique
    )
    out = {"rep": rep, "cmd": shlex.join(prep.cmd), "set": prep.info}
    for phase in ("first", "noop"):
        server.reset()
        m = run_measured(prep.cmd, prep.cwd, env, args.timeout)
        served = server.stats()
        rec = {
            "returncode": m.returncode,
            "timed_out": m.timed_out,
            "wall_s": round(m.wall_s, 3),
            "cpu_s": round(m.cpu_s, 3),
            "max_rss_mb": round(m.max_rss_mb, 1),
            "tree_peak_rss_mb": round(m.tree_peak_rss_mb, 1),
            "server_requests": served["image_responses"] + served["not_found"],
        }
        if phase == "first":
            manifest_urls = []
            mpath = prep.cwd / "manifest.json"
            if mpath.is_file():
                manifest_urls = [
                    u
                    for u in json.loads(mpath.read_text()).get("urls", {})
                    if f":{server.port}/" in u
                ]
            ver = harvester.verify(prep, served["per_path"], urls=manifest_urls)
            problems, count = list(ver.problems), ver.problem_count
            if ver.ok < prep.expected:
                problems.append(f"{ver.ok} of {prep.expected} distinct URLs verified")
                count += 1
            rec.update(
                images_verified=ver.ok,
                unique_urls=prep.expected,
                problems=problems,
                problem_count=count,
            )
        if m.returncode != 0:
            rec["stderr_tail"] = m.stderr_tail
        out[phase] = rec
    return out


# --------------------------------------------------------------------------- report


def summarize(runs: list[dict], floors: list[dict], large: list[dict], available: dict) -> dict:
    by: dict[str, list[dict]] = {"img2dataset": [], "harvester": [], LIKE_FOR_LIKE: []}
    for r in runs:
        by[r["contender"]].append(r)
    s: dict = {"available": available}
    for name, rs in by.items():
        if not rs:
            continue
        s[name] = {
            "runs": len(rs),
            "images_per_s": med([r["images_per_s"] for r in rs]),
            "images_per_s_all": [r["images_per_s"] for r in rs],
            "wall_s": med([r["wall_s"] for r in rs]),
            "cpu_s_per_image": med([r["cpu_s_per_image"] for r in rs]),
            "server_connections": med([r["server_connections"] for r in rs]),
            "max_rss_mb": med([r["max_rss_mb"] for r in rs]),
            "all_verified": all(r["complete"] for r in rs),
            "server_cpu_ms_per_request": med([r["server_cpu_ms_per_request"] for r in rs]),
        }
        if name.startswith("harvester"):
            s[name]["fetch_cpu_s_per_image"] = med([r.get("fetch_cpu_s_per_image") for r in rs])
            s[name]["harvester_connections"] = med([r.get("harvester_connections") for r in rs])
            s[name]["process_images_per_s"] = med([r.get("process_images_per_s") for r in rs])
    fl = [f["images_per_s"] for f in floors if "images_per_s" in f]
    if fl:
        s["cpu_floor"] = {
            "images_per_s": med(fl),
            "images_per_s_all": fl,
            "cpu_s_per_image": med([f.get("cpu_s_per_image") for f in floors]),
            "impl": floors[0].get("impl"),
        }
    h, i = s.get("harvester"), s.get("img2dataset")
    paired: dict[int, dict[str, float]] = {}
    for r in runs:
        paired.setdefault(r["rep"], {})[r["contender"]] = r["images_per_s"]
    for name, key in (("harvester", ""), (LIKE_FOR_LIKE, "_jpeg")):
        x = s.get(name)
        if not (x and i and x["images_per_s"] and i["images_per_s"]):
            continue
        s[f"ratio_harvester{key}_to_img2dataset"] = round(x["images_per_s"] / i["images_per_s"], 3)
        ratios = [
            p[name] / p["img2dataset"]
            for p in paired.values()
            if p.get(name) and p.get("img2dataset")
        ]
        s[f"paired_ratio{key}_median"] = round(med(ratios), 3) if ratios else None
    if h and fl and h["images_per_s"]:
        s["harvester_share_of_floor"] = round(h["images_per_s"] / med(fl), 3)
        if h.get("process_images_per_s"):
            s["process_stage_share_of_floor"] = round(h["process_images_per_s"] / med(fl), 3)
    if i and fl and i["images_per_s"]:
        s["img2dataset_share_of_floor"] = round(i["images_per_s"] / med(fl), 3)
    if large:
        s["large"] = {
            "set": large[0]["set"],
            "runs": len(large),
            "first_wall_s": med([x["first"]["wall_s"] for x in large]),
            "first_max_rss_mb": med([x["first"]["max_rss_mb"] for x in large]),
            "first_tree_peak_rss_mb": med([x["first"]["tree_peak_rss_mb"] for x in large]),
            "noop_wall_s": med([x["noop"]["wall_s"] for x in large]),
            "noop_max_rss_mb": med([x["noop"]["max_rss_mb"] for x in large]),
            "noop_server_requests": med([x["noop"]["server_requests"] for x in large]),
            "first_all_ok": all(
                x["first"]["returncode"] == 0
                and x["first"].get("problem_count", 1) == 0
                and x["first"].get("images_verified") == x["first"].get("unique_urls")
                for x in large
            ),
        }
    return s


def _fmt(value, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _speed_rows(
    s: dict, x: dict, labels: tuple[str, str], key: str, accept: str
) -> list[tuple[str, str, str]]:
    """A harvester variant's images/s (every run) and its ratio to img2dataset (medians and
    paired); `key` picks the variant's ratio entries in the summary ("" or "_jpeg")."""
    speed, ratio = labels
    return [
        (speed, _fmt(x["images_per_s"]), ", ".join(_fmt(v) for v in x["images_per_s_all"])),
        (
            ratio,
            f"{_fmt(s.get(f'ratio_harvester{key}_to_img2dataset'), 'x', 2)}",
            f"paired {_fmt(s.get(f'paired_ratio{key}_median'), 'x', 2)}{accept}",
        ),
    ]


def table_rows(s: dict) -> list[tuple[str, str, str]]:
    """(measurement, median, runs/notes) rows for the printed and the Markdown table."""
    rows: list[tuple[str, str, str]] = []
    i, h = s.get("img2dataset"), s.get("harvester")
    avail = s["available"]
    if i:
        rows += [
            (
                "img2dataset images/s (end to end, verified)",
                _fmt(i["images_per_s"]),
                ", ".join(_fmt(v) for v in i["images_per_s_all"]),
            ),
            ("img2dataset CPU s/image (all processes)", _fmt(i["cpu_s_per_image"], digits=4), ""),
            ("img2dataset connections (server side)", _fmt(i["server_connections"]), ""),
            ("img2dataset all images verified", str(i["all_verified"]), ""),
        ]
    if h:
        rows += _speed_rows(
            s,
            h,
            (
                "harvester images/s (end to end, verified)",
                "harvester / img2dataset (medians; paired)",
            ),
            "",
            f"; accept >= {ACCEPT_RATIO}x",
        )
        rows += [
            ("harvester CPU s/image (all processes)", _fmt(h["cpu_s_per_image"], digits=4), ""),
            (
                "harvester fetch CPU s/image (--json)",
                _fmt(h["fetch_cpu_s_per_image"], digits=4),
                "",
            ),
            (
                "harvester connections (--json; server side)",
                f"{_fmt(h['harvester_connections'])}; {_fmt(h['server_connections'])}",
                "",
            ),
            ("harvester all images verified", str(h["all_verified"]), ""),
        ]
    else:
        rows.append(("harvester", "not available", avail.get("harvester") or ""))
    j = s.get(LIKE_FOR_LIKE)
    if j:
        labels = (
            "harvester, JPEG thumbnails (like img2dataset's) images/s",
            "  ... / img2dataset (medians; paired)",
        )
        rows += _speed_rows(s, j, labels, "_jpeg", "")
        rows += [
            ("  ... CPU s/image (all processes)", _fmt(j["cpu_s_per_image"], digits=4), ""),
            ("  ... all images verified", str(j["all_verified"]), ""),
        ]
    if "cpu_floor" in s:
        f = s["cpu_floor"]
        rows.append(
            (
                f"CPU floor images/s ({f['impl']}, all cores)",
                _fmt(f["images_per_s"]),
                ", ".join(_fmt(v) for v in f["images_per_s_all"]),
            )
        )
        rows.append(
            (
                "CPU floor CPU s/image (work only)",
                _fmt(f["cpu_s_per_image"], digits=4),
                "steadier than images/s on a shared machine",
            )
        )
        if "img2dataset_share_of_floor" in s:
            rows.append(
                ("img2dataset / CPU floor", _fmt(s["img2dataset_share_of_floor"], digits=2), "")
            )
        if "harvester_share_of_floor" in s:
            rows.append(
                (
                    "harvester end to end / CPU floor",
                    _fmt(s["harvester_share_of_floor"], digits=2),
                    "",
                )
            )
        if "process_stage_share_of_floor" in s:
            rows.append(
                (
                    "harvester process stage / CPU floor",
                    _fmt(s["process_stage_share_of_floor"], digits=2),
                    f"accept >= {ACCEPT_FLOOR_SHARE}",
                )
            )
    if "large" in s:
        lg = s["large"]
        st = lg["set"]
        label = f"{st['articles']} articles / {st['references']} refs"
        rows += [
            (
                f"run over {label}: wall s",
                _fmt(lg["first_wall_s"]),
                f"{st['unique_urls']} unique URLs; all ok: {lg['first_all_ok']}",
            ),
            (
                "  peak RSS MB (largest process; tree)",
                f"{_fmt(lg['first_max_rss_mb'])}; {_fmt(lg['first_tree_peak_rss_mb'])}",
                f"accept < {ACCEPT_RSS_MB}",
            ),
            (
                "  no-op re-run: wall s",
                _fmt(lg["noop_wall_s"], digits=2),
                f"accept < {ACCEPT_NOOP_S}; server requests {_fmt(lg['noop_server_requests'])}",
            ),
            ("  no-op re-run: peak RSS MB", _fmt(lg["noop_max_rss_mb"]), ""),
        ]
    if i:
        rows.append(
            (
                "image server CPU ms/request",
                _fmt(i["server_cpu_ms_per_request"], digits=3),
                "(not the bottleneck)",
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print()
    print(f"{'measurement':<{w0}}  {'median':>{w1}}  runs / notes")
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 30}")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")


def markdown_table(rows: list[tuple[str, str, str]], header: str) -> str:
    """The same table in Markdown, for pasting into bench/README.md."""
    lines = [header, "", "| measurement | median | runs / notes |", "|---|---:|---|"]
    lines += [f"| {a.strip()} | {b} | {c.replace('|', '/')} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="harvester vs img2dataset benchmark (see bench/README.md)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 300 images, 1 repetition, 1,000-article scale set",
    )
    p.add_argument("--images", type=int, help="images in the download benchmark [2000]")
    p.add_argument("--reps", type=int, help="repetitions of each contender [3]")
    p.add_argument("--large-articles", type=int, help="articles in the scale set [10000]")
    p.add_argument("--refs-per-article", type=int, default=10)
    p.add_argument("--large-unique", type=int, help="distinct URLs in the scale set [5000]")
    p.add_argument("--large-reps", type=int, help="repetitions of the scale runs [3]")
    p.add_argument("--latency-ms", default="20-50", help="per-request server latency range")
    p.add_argument(
        "--hosts",
        type=int,
        default=8,
        help="CDN host names in harvester's articles (0: 127.0.0.1 in the URLs)",
    )
    p.add_argument("--floor-impl", choices=["pillow", "mirror"], default="pillow")
    p.add_argument(
        "--harvester-exe",
        type=Path,
        help="a harvester executable to use instead of the bench venv's",
    )
    p.add_argument(
        "--harvester-arg",
        action="append",
        default=[],
        help="extra argument for `harvester run` (repeatable)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["img2dataset", "harvester", LIKE_FOR_LIKE, "floor", "large"],
    )
    p.add_argument("--timeout", type=float, default=900, help="per command, seconds")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=15,
        help="no new repetition starts after this (each part runs at least once)",
    )
    p.add_argument("--seed", type=int, default=1, help="corpus seed")
    p.add_argument("--keep", action="store_true", help="keep the scratch folders")
    p.add_argument("--setup-only", action="store_true", help="create the venv and corpus, exit")
    args = p.parse_args(argv)
    quick = args.quick
    args.images = args.images or (300 if quick else 2000)
    args.reps = args.reps or (1 if quick else 3)
    args.large_articles = args.large_articles or (1000 if quick else 10_000)
    args.large_unique = args.large_unique or (500 if quick else 5000)
    args.large_reps = args.large_reps or (1 if quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    raw_argv = sys.argv[1:] if argv is None else argv
    args = parse_args(raw_argv)
    if not in_venv():
        ensure_venv()
        os.execv(str(VENV_BIN / "python"), [str(VENV_BIN / "python"), __file__, *raw_argv])
    sys.path.insert(0, str(BENCH))
    from contenders import Harvester, Img2Dataset
    from cpu_floor import mirror_available
    from make_corpus import describe, ensure_corpus, load_index

    started = time.monotonic()
    budget = args.budget_minutes * 60
    reproduce = shlex.join(["python3", "bench/harness.py", *raw_argv])
    machine = describe_machine()
    corpus = ensure_corpus(args.images, args.seed, CACHE)
    entries = load_index(corpus, args.images)
    if args.setup_only:
        print(json.dumps({"venv": str(VENV), "corpus": str(corpus), **describe(entries)}))
        return 0
    names = [e["name"] for e in entries]
    env = bench_env()
    compile_sources(env)

    i2d = Img2Dataset(VENV_BIN)
    hv = Harvester(
        VENV_BIN,
        hosts=args.hosts or None,
        extra_args=tuple(args.harvester_arg),
        exe=args.harvester_exe,
    )
    available = {"img2dataset": i2d.available(), "harvester": hv.available()}
    if args.floor_impl == "mirror" and (why := mirror_available()):
        print(f"harness: --floor-impl mirror unavailable ({why}); using pillow", file=sys.stderr)
        args.floor_impl = "pillow"
    contenders = []
    if "img2dataset" not in args.skip and available["img2dataset"] is None:
        contenders.append(i2d)
    if "harvester" not in args.skip and available["harvester"] is None:
        contenders.append(hv)
        if LIKE_FOR_LIKE not in args.skip:
            # the same run writing JPEG thumbnails, as img2dataset does: the two tools then
            # produce the same kind of output (harvester's default WebP, method 0, costs
            # ~0.9 ms more per image to encode, for files ~15 % smaller)
            contenders.append(
                Harvester(
                    VENV_BIN,
                    hosts=args.hosts or None,
                    extra_args=(*args.harvester_arg, "--thumbnail-format", "jpeg"),
                    exe=args.harvester_exe,
                    name=LIKE_FOR_LIKE,
                )
            )
    if "harvester" not in args.skip and available["harvester"] is not None:
        print(f"harness: harvester not available: {available['harvester']}", file=sys.stderr)
    do_floor = "floor" not in args.skip

    runs: list[dict] = []
    floors: list[dict] = []
    large: list[dict] = []
    scratch_root = Path(tempfile.mkdtemp(prefix="harvester-bench-"))
    server = ServerProcess(corpus, args.latency_ms, env)
    try:
        for rep in range(args.reps):
            if rep and time.monotonic() - started > budget:
                print(f"harness: time budget spent, stopping after {rep} reps", file=sys.stderr)
                break
            parts: list = [*contenders] + (["floor"] if do_floor else [])
            shift = rep % max(1, len(parts))
            for part in parts[shift:] + parts[:shift]:  # alternate who goes first
                if part == "floor":
                    f = run_floor(
                        rep, corpus, args.images, args.floor_impl, scratch_root, env, args.timeout
                    )
                    floors.append(f)
                    print(
                        f"  rep {rep} cpu-floor: {f.get('images_per_s')} images/s", file=sys.stderr
                    )
                    continue
                r = run_download(part, rep, server, names, scratch_root, env, args.timeout)
                runs.append(r)
                print(
                    f"  rep {rep} {r['contender']}: {r['images_per_s']} images/s, "
                    f"{r['images_verified']}/{r['images_expected']} verified, "
                    f"rc={r['returncode']}",
                    file=sys.stderr,
                )
                if r["problems"]:
                    print(
                        f"    problems ({r['problem_count']}): {r['problems'][:3]}", file=sys.stderr
                    )
        if "large" not in args.skip and hv in contenders:
            for rep in range(args.large_reps):
                if rep and time.monotonic() - started > budget:
                    print("harness: time budget spent, no more scale runs", file=sys.stderr)
                    break
                lg = run_large(hv, rep, server, args, scratch_root, env)
                large.append(lg)
                print(
                    f"  scale rep {rep}: first {lg['first']['wall_s']} s "
                    f"({lg['first']['max_rss_mb']} MB), no-op {lg['noop']['wall_s']} s",
                    file=sys.stderr,
                )
    finally:
        server.stop()
        # Every run's scratch folder is deleted here, never between runs. On an ext4 without
        # a journal (this VM's disk) the inode allocator skips every inode deleted in the last
        # 60-300 s (fs/ext4/ialloc.c, recently_deleted), scanning past each one: right after
        # the previous run's ~8,000 files were deleted, creating files cost harvester's main
        # process ~2 s of kernel CPU a run (perf: find_inode_bit -> recently_deleted), and
        # img2dataset its share. A user's disk has not just lost thousands of files each time.
        # The price: every run's output stays until here, ~2.5 GB at the defaults.
        if not args.keep:
            shutil.rmtree(scratch_root, ignore_errors=True)

    machine["loadavg_end"] = list(os.getloadavg())
    summary = summarize(runs, floors, large, available)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "timestamp": stamp,
        "command": reproduce,
        "machine": machine,
        "config": {k: v for k, v in vars(args).items()},
        "corpus": {"path": str(corpus), **describe(entries)},
        "summary": summary,
        "runs": runs,
        "cpu_floor_runs": floors,
        "large_runs": large,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out_path = RESULTS / f"{stamp}.json"
    out_path.write_text(json.dumps(result, indent=1, default=str))
    c = result["corpus"]
    print(
        f"\nmachine: {machine['nproc']} x {machine['cpu_model']}, {machine['memory_gb']} GB, "
        f"Python {machine['python']}; load average {machine['loadavg_start'][0]:.2f} -> "
        f"{machine['loadavg_end'][0]:.2f} (shared machine: medians and ratios are what count)"
    )
    print(
        f"corpus: {c['count']} JPEGs, median {c['bytes_median'] // 1024} KB, "
        f"{c['long_side_min']}-{c['long_side_max']} px; latency {args.latency_ms} ms; "
        f"{args.reps} reps, alternating"
    )
    rows = table_rows(summary)
    print_table(rows)
    md_path = out_path.with_suffix(".md")
    md_path.write_text(
        markdown_table(
            rows,
            f"`{reproduce}` — {stamp}, load average {machine['loadavg_start'][0]:.1f} -> "
            f"{machine['loadavg_end'][0]:.1f}, {args.reps} reps, {c['count']} images, "
            f"latency {args.latency_ms} ms",
        )
    )
    print(f"\nresults: {out_path} (table in Markdown: {md_path.name})")
    print(f"elapsed: {result['elapsed_s']} s")
    print(f"reproduce: {reproduce}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

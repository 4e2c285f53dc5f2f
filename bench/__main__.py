"""Run the benchmark suite: ``.venv/bin/python -m bench [options]``.

Prints one table (ours, baseline, ratio, target) and writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.alert import OPERATORS
from bench.common import (
    Figure,
    Report,
    Row,
    markdown_table,
    raise_fd_limit,
    rows_json,
    say,
    text_table,
)

BENCHMARKS = ("covering", "alert", "intake", "reports", "work", "instructions", "cold")
DOC = Path("docs/performance.md")
TABLE_START = "<!-- bench:table:start -->"
TABLE_END = "<!-- bench:table:end -->"


def _ints(text: str) -> list[int]:
    return [int(float(part)) for part in text.split(",") if part.strip()]


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s): {', '.join(unknown)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--only",
        type=_names,
        default=list(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    p.add_argument(
        "--zones", type=_ints, default=[1000, 10_000, 100_000], help="covering: zone counts"
    )
    p.add_argument("--points", type=int, default=10_000, help="covering: query points")
    p.add_argument("--no-postgis", action="store_true", help="covering: skip the PostGIS baseline")
    p.add_argument(
        "--leaders", type=_ints, default=[1000, 10_000], help="alert: connected leader counts"
    )
    p.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="alert, reports, work, instructions, cold: databases to run the server on"
        " (default sqlite,postgresql)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=20.0,
        help="alert: incidents per second; cold: the pause before a cold report is 1/rate",
    )
    p.add_argument("--seconds", type=float, default=15.0, help="alert/intake: seconds per stream")
    p.add_argument("--clients", type=int, default=4, help="alert: websocket client processes")
    p.add_argument(
        "--no-ack", action="store_true", help="alert: leaders do not acknowledge (alert path only)"
    )
    p.add_argument(
        "--no-page-pings",
        action="store_true",
        help="alert: leaders do not ping after 20 s of quiet as the pages do",
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record the server with py-spy during each stream (collapsed stacks into this "
        "folder); instructions: keep callgrind's dumps there",
    )
    p.add_argument("--concurrency", type=int, default=32, help="intake: concurrent connections")
    p.add_argument(
        "--operators",
        type=int,
        default=OPERATORS,
        help="intake: operator accounts whose reports take turns (each has its rate bucket)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="intake: server processes (dispatch serve --workers; the baseline gets as many)",
    )
    p.add_argument(
        "--incidents",
        type=_ints,
        default=[100_000, 1_000_000],
        help="reports: incident counts",
    )
    p.add_argument(
        "--reports",
        type=int,
        default=300,
        help="work: reports measured per run, after 30 to warm up (alert's town, first --leaders);"
        " cold: pairs of reports per run",
    )
    p.add_argument(
        "--counted",
        type=int,
        default=30,
        help="instructions: requests of each kind counted per run, under callgrind (default 30)",
    )
    p.add_argument("--json", type=Path, default=Path("var/bench/latest.json"), help="JSON output")
    p.add_argument("--work", type=Path, default=Path("var/bench"), help="scratch files and logs")
    p.add_argument(
        "--update-docs", action="store_true", help=f"put the table into {DOC} between its markers"
    )
    p.add_argument(
        "--table-from",
        type=Path,
        nargs="+",
        default=None,
        help="run nothing: print (and with --update-docs place) the table of earlier JSON runs",
    )
    return p


def _figure(data: dict[str, Any] | None) -> Figure | None:
    return None if data is None else Figure(**data)


def _load_rows(paths: list[Path]) -> tuple[list[Row], list[str], str]:
    rows: list[Row] = []
    notes: list[str] = []
    whens = []
    for path in paths:
        result = json.loads(path.read_text())
        whens.append(result["when"])
        notes += result["notes"]
        for r in result["rows"]:
            ours = _figure(r.pop("ours"))
            assert ours is not None
            baseline, ratio = _figure(r.pop("baseline")), _figure(r.pop("ratio"))
            rows.append(Row(ours=ours, baseline=baseline, ratio=ratio, **r))
    return rows, notes, ", ".join(whens)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.table_from:
        rows, notes, when = _load_rows(args.table_from)
        say(text_table(rows))
        if args.update_docs:
            _update_docs(markdown_table(rows), notes, when)
        return 0
    fds = raise_fd_limit()
    report = Report()
    started = time.time()
    say(f"bench: {', '.join(args.only)}  (open-file limit {fds}, {os.cpu_count()} cores)")
    failed: list[str] = []
    for name in BENCHMARKS:
        if name not in args.only:
            continue
        say(TITLES[name])
        try:
            _run_one(name, report, args)
        except Exception as error:
            # One benchmark failing must not cost the figures of the others; the run still
            # fails (exit 1), its table being short of that benchmark's figures.
            report.note(f"{name} failed: {error!r}")
            traceback.print_exc()
            failed.append(name)

    table = text_table(report.rows)
    say("")
    say(table)
    for note in report.notes:
        say(f"note: {note}")
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    result = {
        "when": when,
        "seconds": round(time.time() - started, 1),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "argv": sys.argv[1:] if argv is None else argv,
        "rows": rows_json(report.rows),
        "notes": report.notes,
        "raw": report.raw,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    say(f"\nJSON written to {args.json}")
    if args.update_docs:
        _update_docs(markdown_table(report.rows), report.notes, when)
    missed = [r for r in report.rows if r.met is False]
    if failed:
        say(f"failed: {', '.join(failed)} (see the notes)")
    return 1 if missed or failed else 0


TITLES = {
    "covering": "covering query",
    "alert": "report to alert, and memory per connection",
    "intake": "intake throughput",
    "reports": "response-time reports",
    "work": "work per report and per flush, in-process",
    "instructions": "instructions per report and per flush, in-process, counted by callgrind",
    "cold": "one report at a time, served, after a pause and right after another",
}


def _run_one(name: str, report: Report, args: argparse.Namespace) -> None:
    if name == "covering":
        from bench import covering

        covering.run(report, args.zones, args.reps, args.points, not args.no_postgis)
    elif name == "alert":
        from bench import alert

        alert.run(report, args)
    elif name == "intake":
        from bench import intake

        intake.run(report, args)
    elif name == "reports":
        from bench import reports

        reports.run(report, args)
    elif name == "work":
        from bench import work

        work.run(report, args)
    elif name == "instructions":
        from bench import instructions

        instructions.run(report, args)
    else:
        from bench import cold

        cold.run(report, args)


def _update_docs(table: str, notes: list[str], when: str) -> None:
    text = DOC.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    body = [f"Runs of {when} (UTC).", "", table]
    if notes:
        body += ["", *(f"- {n}" for n in notes)]
    DOC.write_text(text[: start + len(TABLE_START)] + "\n" + "\n".join(body) + "\n" + text[end:])
    say(f"table written into {DOC}")


if __name__ == "__main__":
    raise SystemExit(main())

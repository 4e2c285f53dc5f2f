"""``dispatch simulate``: try a town's team layout against a real server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def add_simulate_command(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="simulate a town: leaders on phones, incidents at a rate, the 1-3-5 report",
        description=(
            "Generates a town by the plan's proportions (or loads one from JSON), connects every "
            "leader over the websocket, reports incidents at a rate, shows each tier as it is met "
            "or breached, and ends with the share of incidents that would meet 1 minute. "
            "Without --url it seeds a fresh database and runs its own server."
        ),
    )
    town = simulate.add_argument_group("the town")
    town.add_argument("--town", type=Path, help="a town JSON file (see docs/performance.md)")
    town.add_argument("--stations", type=int, default=3, help="police stations (default 3)")
    town.add_argument("--fixed-per-station", type=int, default=8, help="fixed posts per station")
    town.add_argument("--mobile-per-station", type=int, default=3, help="mobile teams per station")
    town.add_argument("--side-km", type=float, default=12.0, help="side of the town's square")
    town.add_argument("--leaders-per-team", type=int, default=1)
    town.add_argument("--save-town", type=Path, help="write the generated town as JSON")
    run = simulate.add_argument_group("the run")
    run.add_argument("--incidents", type=int, default=30, help="how many (default 30)")
    run.add_argument("--rate", type=float, default=6.0, help="incidents per minute (default 6)")
    run.add_argument(
        "--speed",
        type=float,
        default=10.0,
        help="run this many times faster than life; targets and delays shrink alike (default 10)",
    )
    run.add_argument("--walk", type=float, default=1.4, help="fixed-post speed, m/s (default 1.4)")
    run.add_argument("--ride", type=float, default=8.3, help="motorcycle speed, m/s (default 8.3)")
    run.add_argument("--drive", type=float, default=11.0, help="police car speed, m/s")
    run.add_argument("--accept-median", type=float, default=5.0, help="seconds to accept")
    run.add_argument("--miss", type=float, default=0.05, help="share of alerts never answered")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--processes", type=int, default=0, help="leader processes (0: automatic)")
    run.add_argument("--json", type=Path, help="write the report as JSON")
    server = simulate.add_argument_group("the server")
    server.add_argument(
        "--database-url", help="own server: this database (default: a fresh SQLite file)"
    )
    server.add_argument("--url", help="a running server instead (needs --admin); real time only")
    server.add_argument("--admin", help="an admin account of that server; password from stdin")
    server.add_argument("--keep-town", action="store_true", help="leave the simulated teams there")
    simulate.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    from dispatch.simulate import town as towns
    from dispatch.simulate.leaders import Behaviour
    from dispatch.simulate.run import Options, simulate

    if args.town is not None:
        try:
            town = towns.load(args.town)
        except towns.TownFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    else:
        town = towns.generate(
            stations=args.stations,
            fixed_per_station=args.fixed_per_station,
            mobile_per_station=args.mobile_per_station,
            side_m=args.side_km * 1000,
            leaders_per_team=args.leaders_per_team,
            seed=args.seed,
        )
    if args.save_town is not None:
        import json

        args.save_town.write_text(json.dumps(town.to_json(), indent=2, ensure_ascii=False))
    speed = args.speed
    if args.url is not None and speed != 1.0:
        # A running server keeps its own targets; only real time is honest against it.
        print("note: against a running server the simulation runs in real time (--speed 1)")
        speed = 1.0
    password = None
    if args.url is not None:
        password = os.environ.get("DISPATCH_SIMULATE_PASSWORD") or sys.stdin.readline().strip()
    processes = args.processes or max(1, min(os.cpu_count() or 1, town.leader_count // 1000 + 1))
    options = Options(
        town=town,
        incidents=args.incidents,
        rate_per_min=args.rate,
        behaviour=Behaviour(
            walk_mps=args.walk,
            ride_mps=args.ride,
            drive_mps=args.drive,
            accept_median_s=args.accept_median,
            miss_share=args.miss,
            speed=speed,
        ),
        seed=args.seed,
        processes=processes,
        database_url=args.database_url,
        url=args.url,
        admin=args.admin,
        password=password,
        keep_town=args.keep_town,
        json_out=args.json,
    )
    simulate(options, say=lambda line: print(line, flush=True))
    return 0

"""``dispatch simulate``: try a town's team layout against a real server."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dispatch.simulate.town import Town


def positive(text: str) -> float:
    """A finite number above 0 (speeds, rates, distances, durations)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def share(text: str) -> float:
    """A share from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, not {text}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def count(text: str) -> int:
    """A whole number of at least 0 (for --processes, 0 is automatic)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def side_km(text: str) -> float:
    """The side of a generated town's square, in km, within the simulator's bound."""
    from dispatch.simulate.town import MAX_SIDE_M

    value = positive(text)
    if value > MAX_SIDE_M / 1000:
        raise argparse.ArgumentTypeError(
            f"a generated town is at most {MAX_SIDE_M / 1000:g} km across, not {text}"
        )
    return value


def stations(text: str) -> int:
    """How many police stations a generated town has, within the simulator's bound."""
    from dispatch.simulate.town import MAX_STATIONS

    value = positive_int(text)
    if value > MAX_STATIONS:
        raise argparse.ArgumentTypeError(f"at most {MAX_STATIONS}, not {text}")
    return value


def server_url(text: str) -> str:
    """The http(s) address of a running server."""
    import httpx

    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as error:
        raise argparse.ArgumentTypeError(f"not a URL ({error})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise argparse.ArgumentTypeError(f"expected http://host:port or https://host, not {text}")
    return text


def database_url(text: str) -> str:
    """A database URL this server can use; never echoed, it may hold a password."""
    from dispatch.cli import database_url_problem

    problem = database_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None


def add_simulate_command(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="simulate a town: leaders on phones, incidents at a rate, the 1-3-5 report",
        description=(
            "Generates a town by the plan's proportions (or loads one from JSON, or reads a "
            "running server's teams and the places of its incidents), connects every "
            "leader over the websocket, reports incidents at a rate, shows each tier as it is met "
            "or breached, and ends with the share of incidents that would meet 1 minute. "
            "Without --url it seeds a fresh database and runs its own server."
        ),
    )
    town = simulate.add_argument_group("the town")
    town.add_argument("--town", type=Path, help="a town JSON file (see docs/performance.md)")
    town.add_argument(
        "--stations", type=stations, default=3, help="police stations (default 3, at most 1000)"
    )
    town.add_argument("--fixed-per-station", type=count, default=8, help="fixed posts per station")
    town.add_argument(
        "--mobile-per-station", type=count, default=3, help="mobile teams per station"
    )
    town.add_argument(
        "--side-km",
        type=side_km,
        default=12.0,
        help="side of the town's square (default 12, at most 60)",
    )
    town.add_argument("--leaders-per-team", type=positive_int, default=1)
    town.add_argument(
        "--town-from",
        type=server_url,
        metavar="URL",
        help="the teams in service of a running server, their leaders and the places of its "
        "latest incidents (needs --admin)",
    )
    town.add_argument(
        "--history",
        type=count,
        default=1000,
        help="with --town-from: how many of its latest incidents give the places, at most 1000 "
        "(0: none; default 1000)",
    )
    town.add_argument("--save-town", type=Path, help="write the town as JSON")
    town.add_argument(
        "--compare",
        type=Path,
        metavar="TOWN",
        help="a second town file, simulated after the first with the same options and seed; "
        "the two reports are shown side by side",
    )
    town.add_argument(
        "--no-run", action="store_true", help="stop after writing --save-town: no simulation"
    )
    run = simulate.add_argument_group("the run")
    run.add_argument("--incidents", type=positive_int, default=30, help="how many (default 30)")
    run.add_argument("--rate", type=positive, default=6.0, help="incidents per minute (default 6)")
    run.add_argument(
        "--speed",
        type=positive,
        default=10.0,
        help="run this many times faster than life; targets and delays shrink alike (default 10)",
    )
    run.add_argument(
        "--walk", type=positive, default=1.4, help="fixed-post speed, m/s (default 1.4)"
    )
    run.add_argument(
        "--ride", type=positive, default=8.3, help="motorcycle speed, m/s (default 8.3)"
    )
    run.add_argument("--drive", type=positive, default=11.0, help="police car speed, m/s")
    run.add_argument("--accept-median", type=positive, default=5.0, help="seconds to accept")
    run.add_argument("--miss", type=share, default=0.05, help="share of alerts never answered")
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--processes", type=count, default=0, help="leader processes (0: automatic)")
    run.add_argument("--json", type=Path, help="write the report as JSON")
    server = simulate.add_argument_group("the server")
    server.add_argument(
        "--database-url",
        type=database_url,
        help="own server: this database (default: a fresh SQLite file)",
    )
    server.add_argument(
        "--url", type=server_url, help="a running server instead (needs --admin); real time only"
    )
    server.add_argument(
        "--admin",
        help="an admin account of that server; its password from DISPATCH_SIMULATE_PASSWORD,"
        " else the first line of stdin",
    )
    server.add_argument(
        "--keep-town",
        action="store_true",
        help="leave the simulated teams in service there (their accounts are disabled anyway)",
    )
    simulate.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace) -> int:
    try:
        return _simulate_as_told(args)
    except KeyboardInterrupt:
        # What the run had made is undone on the way here (its incidents closed, its teams
        # retired, its accounts disabled), and said; a traceback would add nothing.
        print("stopped (Ctrl-C)", file=sys.stderr)
        return 130


def _simulate_as_told(args: argparse.Namespace) -> int:
    problem = _problem(args) or _unwritable_output(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from dispatch.config import Settings

    # A setting its own server cannot use stops the run here, as it stops every command (main
    # names it, exit 2): found by the server, it came after the town was seeded into the
    # database given, and as the server's line inside an exit 1 of the simulator's.
    settings = Settings()
    from dispatch.simulate.leaders import Behaviour
    from dispatch.simulate.run import Options

    password = None
    if args.url is not None or args.town_from is not None:
        password = os.environ.get("DISPATCH_SIMULATE_PASSWORD") or sys.stdin.readline().strip()
    town = _town(args, password)
    if isinstance(town, int):
        return town
    second = _second_town(args)
    if isinstance(second, int):
        return second
    if args.save_town is not None:
        if not _write("--save-town", args.save_town, town.to_json()):
            return 1
        print(f"wrote {args.save_town}: {len(town.teams)} teams, {_places(town)}")
    if args.no_run:
        return 0
    speed = args.speed
    if args.url is not None and speed != 1.0:
        # A running server keeps its own targets; only real time is honest against it.
        print("note: against a running server the simulation runs in real time (--speed 1)")
        speed = 1.0
    if args.url is not None:
        # Its incidents are real ones to that server: in its record and its reports.
        print(
            "note: the server's own teams are alerted too where their zones cover an incident, "
            "and the incidents stay in its record"
        )
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
        db_host_timeout_s=settings.db_host_timeout_s,
    )
    first = _run(options, args)
    if isinstance(first, int):
        return first
    if second is not None:
        second = _on_first_towns_incidents(town, second)
        return _compare(first, replace(options, town=second), args)
    if args.json is not None and not _write("--json", args.json, first):
        return 1
    return 0


def _compare(first: dict[str, Any], options: Any, args: argparse.Namespace) -> int:
    """Simulate the second town and show both reports side by side."""
    from dispatch.simulate.run import compared

    # Written at once: a second run that fails or is stopped does not cost the first one's.
    if args.json is not None and not _write("--json", args.json, {"compared": [first]}):
        return 1
    then: dict[str, Any] | int = 1
    try:
        print(f"\nthe second town, {args.compare}:", flush=True)
        then = _run(options, args)
    finally:
        if isinstance(then, int) and args.json is not None:
            print(f"the first town's report is in {args.json}", file=sys.stderr)
    if isinstance(then, int):
        return then
    for line in compared(first, then):
        print(line)
    if args.json is not None and not _write("--json", args.json, {"compared": [first, then]}):
        return 1
    return 0


def _unwritable_output(args: argparse.Namespace) -> str | None:
    """Why a file the run is to write cannot be written, found before anything runs: a
    report lost to a typo in its path after minutes of simulation costs the minutes."""
    for option, path in (("--save-town", args.save_town), ("--json", args.json)):
        if path is None:
            continue
        problem = _unwritable(path)
        if problem is not None:
            return f"{option}: {problem}"
    return None


def _unwritable(path: Path) -> str | None:
    if path.is_dir():
        return f"{path} is a folder"
    if not path.parent.is_dir():
        return f"no folder {path.parent}"
    try:
        if path.exists():
            with path.open("a"):
                pass
        else:
            # Made and removed again: only opening says whether the folder takes a file.
            path.open("x").close()
            path.unlink()
    except OSError as error:
        return f"cannot write {path}: {error.strerror or error}"
    return None


def _write(option: str, path: Path, content: Any) -> bool:
    """Write ``content`` as JSON; a failure is one line on stderr."""
    try:
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    except OSError as error:
        print(f"error: {option}: cannot write {path}: {error.strerror or error}", file=sys.stderr)
        return False
    return True


def _problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options taken together, if anything."""
    if args.url is not None and not args.admin:
        return "--url needs --admin (its password is read from stdin)"
    if args.town_from is not None and not args.admin:
        return "--town-from needs --admin (its password is read from stdin)"
    if args.town_from is not None and args.town is not None:
        return "give --town or --town-from, not both"
    if args.town_from is not None and args.url is not None:
        # Simulated there, its copy of the teams would be alerted beside the teams themselves.
        return "--town-from is simulated on a server of the simulator's own: not with --url"
    if args.no_run and args.save_town is None:
        return "--no-run writes the town only: give --save-town"
    if args.no_run and args.compare is not None:
        return "--compare runs both towns: not with --no-run"
    return None


def _second_town(args: argparse.Namespace) -> Town | int | None:
    """The --compare town, read before the first run so a bad file costs no simulation."""
    from dispatch.simulate import town as towns

    if args.compare is None:
        return None
    try:
        return towns.load(args.compare)
    except towns.TownFileError as error:
        print(f"error: --compare: {error}", file=sys.stderr)
        return 2


def _on_first_towns_incidents(first: Town, second: Town) -> Town:
    own = second.incident_places or second.hotspots
    if own and second.where_incidents_fall() != first.where_incidents_fall():
        print("note: the second town is simulated on the first town's incidents, not its own")
    return second.on_incidents_of(first)


def _town(args: argparse.Namespace, password: str | None) -> Town | int:
    """The town to simulate, or the exit status when there is none."""
    from dispatch.simulate import town as towns

    if args.town is not None:
        try:
            return towns.load(args.town)
        except towns.TownFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.town_from is not None:
        import asyncio

        import httpx

        from dispatch.simulate.export import town_of_server

        assert password is not None, "read with the options"
        try:
            return asyncio.run(
                town_of_server(args.town_from, args.admin, password, history=args.history)
            )
        except (httpx.HTTPError, RuntimeError) as error:
            print(f"error: {args.town_from}: {error or type(error).__name__}", file=sys.stderr)
            return 1
    try:
        return towns.generate(
            stations=args.stations,
            fixed_per_station=args.fixed_per_station,
            mobile_per_station=args.mobile_per_station,
            side_m=args.side_km * 1000,
            leaders_per_team=args.leaders_per_team,
            seed=args.seed,
        )
    except towns.TownTooLarge as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _places(town: Town) -> str:
    if town.incident_places:
        return f"{len(town.incident_places)} incident places"
    return "no incident places (incidents fall near the tier-1 sites)"


def _run(options: Any, args: argparse.Namespace) -> dict[str, Any] | int:
    """Run the simulation for its report; a server or database it cannot use is one line on
    stderr, exit 1."""
    import httpx

    from dispatch.cli import database_error, database_errors
    from dispatch.simulate.run import simulate

    server = args.url or "the simulation's own server"
    try:
        return simulate(options, say=lambda line: print(line, flush=True))
    except httpx.HTTPError as error:
        print(f"error: {server}: {error or type(error).__name__}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except database_errors() as error:
        if args.url is not None:
            print(f"error: {server}: {error or type(error).__name__}", file=sys.stderr)
        elif args.database_url is not None:
            print(database_error("--database-url", args.database_url, error), file=sys.stderr)
        else:
            print(f"error: the simulation's database: {error}", file=sys.stderr)
        return 1

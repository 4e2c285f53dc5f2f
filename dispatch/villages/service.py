"""Villages and communities: their boundaries, the village a point falls in, and coverage.

A point on the border of two villages, or inside two overlapping boundaries, belongs to the
smaller of them (then the first by name), so every incident has exactly one village or none.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import write_rows
from dispatch.audit import chain as event_chain
from dispatch.db import after_commit, announce, dialect_name, if_commit_unknown, new_id
from dispatch.errors import InvalidInput, NotFound, unparsable
from dispatch.incidents.models import EventRecord, Incident
from dispatch.rosters.files import FileRejected, Problem, office_text
from dispatch.schemas import name_problem, strip_name
from dispatch.teams import service as teams
from dispatch.villages.index import VILLAGES_CHANNEL, VillageIndex, Villages
from dispatch.villages.models import Village
from dispatch.villages.schemas import CoverageOut, VillageImportOut, VillageNameOut, VillageOut
from geo.areas import DEFAULT_TOLERANCE_M, area_m2, geodesic_circle, polygonal
from geo.crs import CRS
from geo.errors import CoordinateError, ZoneError
from geo.zones import parse_zone_geojson, zone_to_geojson

NAME_KEYS = ("name", "名称", "NAME", "Name")
TOWN_NAME = "全镇"
_CHUNK = 5000
# Boxes ORed in one query: SQLite refuses an expression tree deeper than 1000 (an import of a
# thousand villages in one OR was a 500).
_BOXES_PER_QUERY = 100
# Incidents tagged again whose events are appended by one statement (their heads locked by one).
_EVENTS_PER_STATEMENT = 500


def village_out(village: Village) -> VillageOut:
    return VillageOut.model_validate(village)


async def list_villages(session: AsyncSession) -> list[Village]:
    return list(await session.scalars(select(Village).order_by(Village.name)))


async def village_names(session: AsyncSession) -> list[VillageNameOut]:
    """Every village's id and name, in the order of ``list_villages``: the boundaries are not
    read (a city's are megabytes)."""
    rows = await session.execute(select(Village.id, Village.name).order_by(Village.name))
    return [VillageNameOut(id=village_id, name=name) for village_id, name in rows]


async def get_village(session: AsyncSession, village_id: str) -> Village:
    village = await session.get(Village, village_id)
    if village is None:
        raise NotFound(f"village {village_id!r} does not exist", field="village_id")
    return village


async def villages_by_id(session: AsyncSession, ids: Sequence[str]) -> dict[str, Village]:
    if not ids:
        return {}
    rows = await session.scalars(select(Village).where(Village.id.in_(list(ids))))
    return {v.id: v for v in rows}


# ---------------------------------------------------------------- the village of a point


def lost_its_village(error: IntegrityError) -> bool:
    """Whether ``error`` is an incident's insert naming a village deleted meanwhile: tagged
    from the index before the delete committed, it waited on the village's row, then found
    it gone (PostgreSQL; on SQLite the delete and the report take turns)."""
    return "fk_incidents_village_id_villages" in str(error.orig)


async def load_index(session: AsyncSession) -> VillageIndex:
    """Every village, for the index a report tags its incident from."""
    return VillageIndex(await list_villages(session))


def _changed(session: AsyncSession, villages: Villages | None, index: VillageIndex) -> None:
    """This process tags with ``index`` once the change commits; the others reload theirs.
    Where the COMMIT's outcome is unknown this process reloads its own from the tables (at
    once, and again a little later: the database may still be completing the COMMIT): else
    an import that committed all the same left its new and redrawn villages untagged here
    until the next change."""
    if villages is not None:
        after_commit(session, partial(villages.replace, index))
        if_commit_unknown(session, villages.reload_soon)
    announce(session, VILLAGES_CHANNEL, "all")


@dataclass(frozen=True)
class _Box:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


def _box(village: Village) -> _Box:
    return _Box(village.min_lon, village.min_lat, village.max_lon, village.max_lat)


async def _retag(
    session: AsyncSession,
    touched: set[str],
    boxes: Sequence[_Box],
    retagged: Retagged,
    exclude: str | None = None,
) -> tuple[int, VillageIndex]:
    """Re-decide the village of every incident that a changed boundary may concern; returns
    how many changed and the index of the villages after the change. Each change is recorded
    in its incident's event chain (``village_changed``), as ``retagged`` says."""
    villages = [v for v in await list_villages(session) if v.id != exclude]
    locator = VillageIndex(villages)
    near = [
        and_(Incident.lon.between(b.min_lon, b.max_lon), Incident.lat.between(b.min_lat, b.max_lat))
        for b in boxes
    ]
    tagged = sorted(touched)
    conditions = [
        *(or_(*near[i : i + _BOXES_PER_QUERY]) for i in range(0, len(near), _BOXES_PER_QUERY)),
        *(Incident.village_id.in_(tagged[i : i + 500]) for i in range(0, len(tagged), 500)),
    ]
    changes: dict[str | None, list[str]] = {}
    seen: set[str] = set()
    for condition in conditions:
        query = select(Incident.id, Incident.lon, Incident.lat, Incident.village_id).where(
            condition
        )
        result = await session.stream(query.execution_options(yield_per=_CHUNK))
        async for chunk in result.partitions(_CHUNK):
            rows = [row for row in chunk if row[0] not in seen]
            seen.update(row[0] for row in rows)
            located = locator.locate([row[1] for row in rows], [row[2] for row in rows])
            for row, new in zip(rows, located, strict=True):
                if row[3] != new:
                    changes.setdefault(new, []).append(row[0])
    for village_id, incident_ids in changes.items():
        for start in range(0, len(incident_ids), 500):
            batch = incident_ids[start : start + 500]
            await session.execute(
                update(Incident).where(Incident.id.in_(batch)).values(village_id=village_id)
            )
    await _record_retags(session, changes, locator, retagged)
    return sum(len(ids) for ids in changes.values()), locator


@dataclass(frozen=True)
class Retagged:
    """When and by whom the incidents were tagged again: their ``village_changed`` events'."""

    at: datetime
    actor_id: str | None


async def _record_retags(
    session: AsyncSession,
    changes: dict[str | None, list[str]],
    locator: VillageIndex,
    retagged: Retagged,
) -> None:
    """A ``village_changed`` event for every incident tagged again, with its new village's id
    and name: the reports count it there from now on, and ``dispatch audit verify`` holds its
    row to the latest such event. Appended after every incident's row is updated (each
    incident locked before its chain's head, as every other writer takes them), in batches,
    heads in incident-id order throughout."""
    new_village = {
        incident_id: village_id
        for village_id, incident_ids in changes.items()
        for incident_id in incident_ids
    }
    facts = {
        village_id: {
            "village_id": village_id,
            "village_name": locator.names.get(village_id) if village_id is not None else None,
        }
        for village_id in changes
    }
    ordered = sorted(new_village)
    for start in range(0, len(ordered), _EVENTS_PER_STATEMENT):
        events = [
            EventRecord(
                incident_id,
                retagged.at,
                "village_changed",
                retagged.actor_id,
                dict(facts[new_village[incident_id]]),
            )
            for incident_id in ordered[start : start + _EVENTS_PER_STATEMENT]
        ]
        await write_rows(session, *await event_chain.appended_rows(session, events))


# ---------------------------------------------------------------- import and delete


@dataclass(frozen=True)
class _Parsed:
    name: str
    geometry: Polygon | MultiPolygon


def _decoded(data: bytes) -> str:
    """The file's text: UTF-8 (RFC 7946's), with or without a byte order mark, or else GBK as
    GIS tools on a Chinese Windows PC save it."""
    text = office_text(data)
    if text is None:
        raise InvalidInput(
            "body: not a JSON document (the text is neither UTF-8 nor GB18030 (GBK))",
            field="body",
        )
    return text


def parse_feature_collection(data: bytes, asked: CRS | None, max_vertices: int) -> list[_Parsed]:
    """The file's villages in WGS 84. ``asked`` is the system the request names (?crs=): a
    system the file states on the collection or a geometry must be it; with none asked, what
    the file states, else WGS 84."""
    crs = asked or CRS.WGS84
    try:
        document = json.loads(_decoded(data))
    except (ValueError, RecursionError) as error:
        # Not UTF-8, not JSON, nested past the interpreter's depth, or a number of more
        # digits than Python converts: all the file's fault, none a crash.
        reason = unparsable(error)
        raise InvalidInput(f"body: not a JSON document ({reason})", field="body") from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise InvalidInput("body: expected a GeoJSON FeatureCollection", field="body")
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidInput(
            "features: a FeatureCollection with at least one feature", field="features"
        )
    problems: list[Problem] = []
    crs = _declared_crs(document.get("crs"), "crs", crs, problems, asked)
    parsed: list[_Parsed] = []
    seen: dict[str, int] = {}
    for i, feature in enumerate(features):
        where = f"features[{i}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(Problem(None, where, "expected a GeoJSON Feature"))
            continue
        name, wrong = _feature_name(feature.get("properties"))
        if name is None:
            problems.append(Problem(None, f"{where}.properties.name", wrong))
        elif name in seen:
            problems.append(
                Problem(
                    None, f"{where}.properties.name", f"{name!r} repeats features[{seen[name]}]"
                )
            )
        else:
            seen[name] = i
        raw = feature.get("geometry")
        own = crs
        if isinstance(raw, dict) and "crs" in raw:
            own = _declared_crs(raw["crs"], f"{where}.geometry.crs", crs, problems, asked)
            raw = {k: v for k, v in raw.items() if k != "crs"}
        try:
            geometry = parse_zone_geojson(raw, own, max_vertices=max_vertices)
        except (ZoneError, CoordinateError) as error:
            problems.append(Problem(None, f"{where}.geometry", str(error)))
            continue
        problem = _implausible(geometry)
        if problem is not None:
            problems.append(Problem(None, f"{where}.geometry", problem))
            continue
        if name is not None:
            parsed.append(_Parsed(name, geometry))
    if problems:
        raise FileRejected(
            f"{len(problems)} problem(s) in the GeoJSON; no village was imported", problems
        )
    return parsed


# The names GeoJSON files of 2008 used for WGS 84, longitude first; RFC 7946 drops the member.
# CGCS2000 (EPSG:4490) too: China's official boundaries, the land surveys' villages among them,
# come in it, and it lies within centimetres of WGS 84 (both are realised on the ITRF), far
# below the metre a village's edge is known to; GDAL and QGIS write it longitude first in
# GeoJSON as they do WGS 84. Refused, the office had no way to load its own villages.
_WGS84_NAMES = frozenset(
    {
        "urn:ogc:def:crs:ogc:1.3:crs84",
        "epsg:4326",
        "urn:ogc:def:crs:epsg::4326",
        "crs84",
        "epsg:4490",
        "urn:ogc:def:crs:epsg::4490",
    }
)


def _declared_crs(
    declared: object, where: str, default: CRS, problems: list[Problem], asked: CRS | None
) -> CRS:
    """A crs the file states itself: ours by name (as a team's zone takes it), or a 2008-style
    named crs that is WGS 84. Any other is a problem, never silently read as WGS 84 (GCJ-02
    lies some 600 m off near Qingxi), and so is one other than the request's ?crs=: which of
    the two is wrong is not for the import to guess."""
    if declared is None:
        return default
    stated = _stated_crs(declared)
    if stated is None:
        problems.append(
            Problem(
                None,
                where,
                "use wgs84 (or CGCS2000, EPSG:4490), gcj02 or bd09 (or ?crs=); other systems "
                "are not read",
            )
        )
        return default
    if asked is not None and stated != asked:
        problems.append(
            Problem(
                None,
                where,
                f"the file states {stated.value} here, the request ?crs={asked.value}: "
                "remove the file's crs or send the ?crs= it states",
            )
        )
        return default
    return stated


def _stated_crs(declared: object) -> CRS | None:
    if isinstance(declared, str):
        try:
            return CRS(declared.lower())
        except ValueError:
            pass
    elif isinstance(declared, dict):
        properties = declared.get("properties")
        name = properties.get("name") if isinstance(properties, dict) else None
        if isinstance(name, str) and name.lower() in _WGS84_NAMES:
            return CRS.WGS84
    return None


def _implausible(geometry: Polygon | MultiPolygon) -> str | None:
    # A boundary wider than geo.zones.MAX_ZONE_SPAN_DEG was refused while parsing (a
    # world-spanning square was accepted with an area of 0 and then held every incident).
    area = area_m2(geometry)
    if not math.isfinite(area) or area <= 0:
        return "the boundary encloses no area"
    return None


MAX_NAME = 128
_NAME_FROM = (
    f"no name: a village's name is read from properties.{NAME_KEYS[0]} "
    f"(or {', '.join(NAME_KEYS[1:])})"
)
# Of a feature's own properties, how many a refusal lists.
_KEYS_SHOWN = 10


def _no_name(properties: object) -> str:
    """Why a feature has no name, saying where a name is read from and what the feature has:
    a land-survey export names its villages in a column of its own (XZQMC, 村名, …), and the
    admin must know which one to rename."""
    if not isinstance(properties, dict) or not properties:
        return f"{_NAME_FROM}; this feature has no properties"
    for key in NAME_KEYS:
        value = properties.get(key)
        if value is not None and not isinstance(value, str):
            return f"the name must be text, not {json.dumps(value, ensure_ascii=False)[:40]}"
    if any(key in properties for key in NAME_KEYS):
        return f"{_NAME_FROM}, and it is empty here"
    keys = [str(key)[:40] for key in list(properties)[:_KEYS_SHOWN]]
    more = ", …" if len(properties) > _KEYS_SHOWN else ""
    return (
        f"{_NAME_FROM}; this feature's properties are {', '.join(keys)}{more}: rename the one "
        f"that holds the name to {NAME_KEYS[0]}"
    )


def _feature_name(properties: object) -> tuple[str | None, str]:
    """The feature's name, or None and why there is none to store: the first of NAME_KEYS
    that holds text, read as the API reads a name (dispatch.schemas.name_problem)."""
    if not isinstance(properties, dict):
        return None, _no_name(properties)
    for key in NAME_KEYS:
        value = properties.get(key)
        if isinstance(value, str) and strip_name(value):
            name, wrong = _storable(strip_name(value))
            problem = None if name is None else name_problem(name, MAX_NAME)
            if problem is not None:
                return None, f"the name {problem}"
            return name, wrong
    return None, _no_name(properties)


def _storable(name: str) -> tuple[str | None, str]:
    # An upload skips the NUL check every JSON body gets (a roster is a binary spreadsheet),
    # and JSON's escapes can spell what no database stores: NUL (PostgreSQL refuses it in
    # text), and half a surrogate pair, which is no character at all (neither backend
    # encodes it).
    if "\x00" in name:
        return None, "a name must not contain NUL (\\u0000) characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None, "a name must be Unicode text, not half of a surrogate pair (\\ud800-\\udfff)"
    return name, ""


# Taken by every import and deletion, for its transaction (an arbitrary constant: "villages").
VILLAGES_LOCK = 0x76696C6C61676573


async def _take_turn(session: AsyncSession) -> None:
    """Imports and deletions of villages take turns: each reads the villages, decides which
    names are new and which boundaries to replace, and builds the index it swaps in from
    what it read. Two at once inserted the same new name twice (the second a 500 on
    ``uq_villages_name``) or each swapped in an index without the other's change. So each
    waits here, on PostgreSQL, until the one before it has committed, and reads the villages
    as that one left them: an identical import made twice at once creates the villages once
    and then replaces their boundaries with the same ones. On SQLite the one connection
    already makes them take turns."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": VILLAGES_LOCK})


async def import_villages(
    session: AsyncSession,
    data: bytes,
    *,
    crs: CRS | None,
    now: datetime,
    max_vertices: int,
    villages: Villages | None = None,
    actor_id: str | None = None,
) -> VillageImportOut:
    """Add each feature as a village, or replace the boundary of the village of that name."""
    # Off the event loop: thousands of features take a good part of a second to check.
    parsed = await asyncio.to_thread(parse_feature_collection, data, crs, max_vertices)
    await _take_turn(session)
    existing = {v.name: v for v in await list_villages(session)}
    created: list[str] = []
    updated: list[str] = []
    touched: set[str] = set()
    boxes: list[_Box] = []
    for item in parsed:
        geojson = zone_to_geojson(item.geometry)
        min_lon, min_lat, max_lon, max_lat = item.geometry.bounds
        fields: dict[str, Any] = {
            "boundary": geojson,
            "area_m2": round(area_m2(item.geometry), 1),
            "min_lon": min_lon,
            "min_lat": min_lat,
            "max_lon": max_lon,
            "max_lat": max_lat,
            "updated_at": now,
        }
        village = existing.get(item.name)
        if village is None:
            village = Village(id=new_id(), name=item.name, created_at=now, **fields)
            session.add(village)
            created.append(item.name)
        else:
            boxes.append(_box(village))
            for key, value in fields.items():
                setattr(village, key, value)
            updated.append(item.name)
        touched.add(village.id)
        boxes.append(_box(village))
    await session.flush()
    retagged, index = await _retag(session, touched, boxes, Retagged(now, actor_id))
    _changed(session, villages, index)
    return VillageImportOut(created=created, updated=updated, retagged=retagged)


async def delete_village(
    session: AsyncSession,
    village_id: str,
    villages: Villages | None = None,
    *,
    now: datetime,
    actor_id: str | None = None,
) -> int:
    """Remove a village; its incidents fall to an overlapping village or to none."""
    await _take_turn(session)
    village = await get_village(session, village_id)
    retagged, index = await _retag(
        session, {village.id}, [_box(village)], Retagged(now, actor_id), exclude=village.id
    )
    _changed(session, villages, index)
    await session.flush()
    await session.delete(village)
    await session.flush()
    return retagged


# ---------------------------------------------------------------- coverage


@dataclass(frozen=True)
class _ZoneSpec:
    lon: float
    lat: float
    radius_m: float | None
    zone: dict[str, Any] | None


@dataclass(frozen=True)
class _Measured:
    zones: int
    boundary_area: float
    covered: Polygon | MultiPolygon
    covered_area: float
    uncovered: Polygon | MultiPolygon
    uncovered_area: float


def _measure(
    boundary: Polygon | MultiPolygon, specs: Sequence[_ZoneSpec], tolerance_m: float
) -> _Measured:
    shapes = []
    for spec in specs:
        if spec.zone is not None:
            shapes.append(shape(spec.zone))
        elif spec.radius_m is not None:
            shapes.append(geodesic_circle(spec.lon, spec.lat, spec.radius_m, tolerance_m))
    nearby = [s for s in shapes if s.intersects(boundary)]
    union = shapely.union_all(nearby) if nearby else MultiPolygon([])
    covered = polygonal(shapely.intersection(boundary, union))
    uncovered = polygonal(shapely.difference(boundary, union))
    return _Measured(
        zones=len(nearby),
        boundary_area=area_m2(boundary),
        covered=covered,
        covered_area=area_m2(covered),
        uncovered=uncovered,
        uncovered_area=area_m2(uncovered),
    )


def _feature(part: str, geometry: Polygon | MultiPolygon, area: float) -> dict[str, Any]:
    as_json = json.loads(json.dumps(mapping(geometry)))
    return {
        "type": "Feature",
        "properties": {"part": part, "area_m2": round(area, 1)},
        "geometry": as_json,
    }


COVERAGE_METHOD = (
    "circle zones as inscribed polygons with vertices on the geodesic circle (WGS84, "
    f"edges at most {DEFAULT_TOLERANCE_M} m inside it); areas geodesic on the WGS84 ellipsoid "
    "(pyproj Geod.geometry_area_perimeter)"
)


async def coverage(session: AsyncSession, tier: int, village_id: str | None) -> CoverageOut:
    """How much of a village (or of the whole town) the tier's zones cover, and where not."""
    if village_id is not None:
        village = await get_village(session, village_id)
        boundary: Polygon | MultiPolygon = polygonal(shape(village.boundary))
        name = village.name
    else:
        villages = await list_villages(session)
        if not villages:
            raise NotFound(
                "no villages: the town's boundary is the union of its villages; import them first",
                field="village_id",
            )
        boundary = polygonal(shapely.union_all([shape(v.boundary) for v in villages]))
        name = TOWN_NAME
    specs = [
        _ZoneSpec(t.lon, t.lat, t.radius_m, t.zone)
        for t in await teams.all_teams(session)
        if t.tier == tier
    ]
    # Unions of hundreds of circles take a while: keep them off the event loop.
    measured = await asyncio.to_thread(_measure, boundary, specs, DEFAULT_TOLERANCE_M)
    share = measured.covered_area / measured.boundary_area if measured.boundary_area else 0.0
    return CoverageOut(
        tier=tier,
        village_id=village_id,
        boundary_name=name,
        zones=measured.zones,
        boundary_area_m2=round(measured.boundary_area, 1),
        covered_area_m2=round(measured.covered_area, 1),
        uncovered_area_m2=round(measured.uncovered_area, 1),
        covered_share=round(share, 6),
        method=COVERAGE_METHOD,
        geojson={
            "type": "FeatureCollection",
            "features": [
                _feature("covered", measured.covered, measured.covered_area),
                _feature("uncovered", measured.uncovered, measured.uncovered_area),
            ],
        },
    )

"""Team zones and the spatial index that answers "which zones cover this point".

Coverage is exact: a circle covers a point when the geodesic distance from
its centre is at most its radius, and a polygon covers a point when the point
lies inside it or on its boundary.  The STRtree is only a candidate filter;
every candidate is decided by the exact test, so the index can never
disagree with a brute-force check.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import repeat
from typing import Any, TypeAlias, TypeGuard, TypeVar

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.errors import GEOSException
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.validation import explain_validity

from geo.crs import CRS, LonLat, check_lon_lat, finite_float, from_wgs84, to_wgs84
from geo.errors import CoordinateError, ZoneError
from geo.geodesy import wgs84_geod


@dataclass(frozen=True, slots=True)
class CircleZone:
    """All points within radius_m (geodesic, WGS-84) of a WGS-84 centre."""

    key: str
    lon: float
    lat: float
    radius_m: float

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_zone_position(self.key, self.lon, self.lat)
        radius = finite_float(self.radius_m)
        if radius is None or radius <= 0:
            raise ZoneError(f"zone {self.key!r}: radius_m must be a positive finite number")


@dataclass(frozen=True, slots=True)
class PolygonZone:
    """A WGS-84 polygon; the anchor is the team's position, used for distances."""

    key: str
    anchor_lon: float
    anchor_lat: float
    geometry: Polygon | MultiPolygon

    def __post_init__(self) -> None:
        _check_key(self.key)
        _check_zone_position(self.key, self.anchor_lon, self.anchor_lat)
        if not isinstance(self.geometry, Polygon | MultiPolygon):
            raise ZoneError(f"zone {self.key!r}: geometry must be a Polygon or MultiPolygon")
        # covers() gives undefined answers on empty or invalid geometry.
        if self.geometry.is_empty:
            raise ZoneError(f"zone {self.key!r}: geometry is empty")
        if not self.geometry.is_valid:
            raise ZoneError(
                f"zone {self.key!r}: invalid geometry: {explain_validity(self.geometry)}"
            )


Zone: TypeAlias = CircleZone | PolygonZone


@dataclass(frozen=True, slots=True)
class Hit:
    """A zone that matched, with the geodesic distance from its centre or anchor."""

    key: str
    distance_m: float


# A frozen dataclass's __init__ sets each field through object.__setattr__,
# which made building the hundred Hits of a crowded point a third of
# covering()'s time.  Hit has two slots and no __post_init__, so creating the
# object and filling its slots directly is exactly what __init__ does, at
# half the cost (tests check the result equals Hit(key, distance)).
_new_object = object.__new__
_set_hit_key: Callable[[Hit, str], None] = vars(Hit)["key"].__set__
_set_hit_distance: Callable[[Hit, float], None] = vars(Hit)["distance_m"].__set__


def _hits(keys: list[str], distances: list[float]) -> list[Hit]:
    """[Hit(key, distance) for each pair], built in C loops."""
    hits: list[Hit] = list(map(_new_object, repeat(Hit, len(keys))))
    deque(map(_set_hit_key, hits, keys), maxlen=0)
    deque(map(_set_hit_distance, hits, distances), maxlen=0)
    return hits


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ZoneError("zone key must be a non-empty string")


def _check_zone_position(key: str, lon: float, lat: float) -> None:
    try:
        check_lon_lat(lon, lat)
    except CoordinateError as error:
        raise ZoneError(f"zone {key!r}: {error.message}") from error


# --- conservative bounding boxes for geodesic circles -----------------------
#
# Along any path, a metre of length moves latitude by at most 1/M radians and
# longitude by at most 1/(N cos(lat)) radians, where M and N are the
# ellipsoid's radii of curvature.  M is smallest at the equator (a(1 - e^2))
# and N is never below a, so a geodesic of length r stays within
# r / (a(1 - e^2)) radians of latitude and, with lat_max the most poleward
# latitude it can reach, r / (a cos(lat_max)) radians of longitude.  The
# slack only absorbs floating-point noise.

_WGS84_A = 6378137.0
_WGS84_F = 1.0 / 298.257223563
_WGS84_MIN_MERIDIAN_RADIUS = _WGS84_A * (1.0 - _WGS84_F * (2.0 - _WGS84_F))
_BOX_SLACK = 1.001
_BOX_PAD_DEG = 1e-7
# Past this latitude the longitude extent is not worth bounding tightly.
_POLAR_CAP_DEG = 89.0


def _circle_boxes(
    lons: NDArray[np.float64], lats: NDArray[np.float64], radii_m: NDArray[np.float64]
) -> Any:
    """Shapely boxes that surely contain every point within radius of each centre."""
    d_lat = np.degrees(radii_m / _WGS84_MIN_MERIDIAN_RADIUS) * _BOX_SLACK + _BOX_PAD_DEG
    south = np.maximum(lats - d_lat, -90.0)
    north = np.minimum(lats + d_lat, 90.0)
    poleward = np.maximum(np.abs(south), np.abs(north))
    cos_poleward = np.cos(np.radians(np.minimum(poleward, _POLAR_CAP_DEG)))
    d_lon = np.degrees(radii_m / (_WGS84_A * cos_poleward)) * _BOX_SLACK + _BOX_PAD_DEG
    west, east = lons - d_lon, lons + d_lon
    # Near a pole or across the antimeridian the circle may reach any
    # longitude; a full-width box is crude but never wrong.
    full_width = (poleward >= _POLAR_CAP_DEG) | (west < -180.0) | (east > 180.0)
    west = np.where(full_width, -180.0, west)
    east = np.where(full_width, 180.0, east)
    return shapely.box(west, south, east, north)


# --- a cheap test that a point is certainly outside a circle ---------------------
#
# Near a circle the ellipsoid is close to its tangent plane: a point dlon, dlat
# degrees from the centre is about hypot(dlon * E, dlat * M) metres away, with
# E and M the metres per degree along the parallel and along the meridian
# (from the prime-vertical and meridional radii of curvature) at the pair's
# middle latitude.  Two shortcuts keep this to a few numpy operations: E is the
# mean of E at the centre (stored per zone) and at the point, which is E at the
# middle latitude to within about dlat^2 / 8 relative; M is taken at the point,
# and M changes by at most 1e-2 relative per radian of latitude.  The plane
# itself departs from the geodesic by terms of order (d / a)^2.  For d <= 20 km
# and |lat| <= 70 degrees the estimate stays within 2e-5 relative of Geod.inv
# (worst case over random pairs, tests/geo/test_geo_zone_prefilter.py; it is
# M's term, 1e-2 * dlat / 2).  A candidate is dropped only when the estimate
# exceeds radius * (1 + 1e-3) + 0.5 m, fifty times the estimate's worst error,
# so no point within the radius is ever dropped and every candidate kept is
# decided by Geod.inv as before.  Larger circles, circles beyond 70 degrees and
# circles within reach of the antimeridian (where dlon jumps by 360) are never
# dropped.

_WGS84_E2 = _WGS84_F * (2.0 - _WGS84_F)
_PREFILTER_MAX_RADIUS_M = 20_000.0
_PREFILTER_MAX_ABS_LAT = 70.0
# A 20 km circle at 70 degrees spans 0.6 degrees of longitude either way.
_PREFILTER_MAX_ABS_LON = 179.0
_PREFILTER_REL_MARGIN = 1e-3
_PREFILTER_ABS_MARGIN_M = 0.5


def _metres_per_degree(
    lats: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Metres per degree east (along the parallel) and north at each latitude."""
    phi = np.radians(lats)
    w = np.sqrt(1.0 - _WGS84_E2 * np.sin(phi) ** 2)
    east = np.radians(_WGS84_A / w * np.cos(phi))
    north = np.radians(_WGS84_A * (1.0 - _WGS84_E2) / w**3)
    return east, north


def _metres_per_degree_at(lat: float) -> tuple[float, float]:
    """_metres_per_degree for one latitude, without numpy's cost per call."""
    phi = math.radians(lat)
    w = math.sqrt(1.0 - _WGS84_E2 * math.sin(phi) ** 2)
    east = math.radians(_WGS84_A / w * math.cos(phi))
    north = math.radians(_WGS84_A * (1.0 - _WGS84_E2) / w**3)
    return east, north


def _plane_distance_sq_m2(
    centre_lons: NDArray[np.float64],
    centre_lats: NDArray[np.float64],
    half_east_m_per_deg_at_centres: NDArray[np.float64],
    lons: float | NDArray[np.float64],
    lats: float | NDArray[np.float64],
    east_m_per_deg: float | NDArray[np.float64],
    north_m_per_deg: float | NDArray[np.float64],
) -> NDArray[np.float64]:
    """The tangent-plane estimate above, squared, from each centre to its point.

    east_m_per_deg and north_m_per_deg are _metres_per_degree at the point.
    """
    east_m = (centre_lons - lons) * (half_east_m_per_deg_at_centres + 0.5 * east_m_per_deg)
    north_m = (centre_lats - lats) * north_m_per_deg
    distances_sq: NDArray[np.float64] = east_m * east_m + north_m * north_m
    return distances_sq


def _prefilter_reach_sq(
    lons: NDArray[np.float64], lats: NDArray[np.float64], radii_m: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Squared estimate beyond which a point is surely outside; inf: never drop."""
    reach = radii_m * (1.0 + _PREFILTER_REL_MARGIN) + _PREFILTER_ABS_MARGIN_M
    applies = (
        (radii_m <= _PREFILTER_MAX_RADIUS_M)
        & (np.abs(lats) <= _PREFILTER_MAX_ABS_LAT)
        & (np.abs(lons) <= _PREFILTER_MAX_ABS_LON)
    )
    # NaN radii (polygon zones) fail the radius test and are never dropped.
    return np.where(applies, reach * reach, np.inf)


# --- the index ----------------------------------------------------------------


@dataclass(slots=True)
class _Columns:
    """Each zone's numbers, item i of every array for zone i."""

    centre_lon: NDArray[np.float64]
    centre_lat: NDArray[np.float64]
    radius_m: NDArray[np.float64]
    is_circle: NDArray[np.bool_]
    half_east_m_per_deg: NDArray[np.float64]
    prefilter_reach_sq: NDArray[np.float64]
    # A circle's box, or the (prepared) polygon itself.
    tree_items: NDArray[np.object_]
    key_objects: NDArray[np.object_]

    @classmethod
    def of(cls, zones: Sequence[Zone]) -> _Columns:
        lons = np.array([_centre(zone)[0] for zone in zones], dtype=np.float64)
        lats = np.array([_centre(zone)[1] for zone in zones], dtype=np.float64)
        radii = np.array([_radius_or_nan(zone) for zone in zones], dtype=np.float64)
        is_circle = np.array([isinstance(zone, CircleZone) for zone in zones], dtype=bool)
        items = np.empty(len(zones), dtype=object)
        circles = np.flatnonzero(is_circle)
        items[circles] = _circle_boxes(lons[circles], lats[circles], radii[circles])
        for i, zone in enumerate(zones):
            if isinstance(zone, PolygonZone):
                items[i] = zone.geometry
        # Preparing makes the repeated covers() tests several times faster.
        shapely.prepare(items[~is_circle])
        return cls(
            lons,
            lats,
            radii,
            is_circle,
            0.5 * _metres_per_degree(lats)[0],
            _prefilter_reach_sq(lons, lats, radii),
            items,
            np.array([zone.key for zone in zones], dtype=object),
        )

    def taken(self, source: NDArray[np.intp]) -> _Columns:
        """New arrays, item i copied from item ``source[i]`` (left as item 0 where -1)."""
        at = np.maximum(source, 0)
        return _Columns(
            self.centre_lon[at],
            self.centre_lat[at],
            self.radius_m[at],
            self.is_circle[at],
            self.half_east_m_per_deg[at],
            self.prefilter_reach_sq[at],
            self.tree_items[at],
            self.key_objects[at],
        )

    def put(self, places: NDArray[np.intp], other: _Columns) -> None:
        """Overwrite items ``places`` with ``other``'s, in order."""
        self.centre_lon[places] = other.centre_lon
        self.centre_lat[places] = other.centre_lat
        self.radius_m[places] = other.radius_m
        self.is_circle[places] = other.is_circle
        self.half_east_m_per_deg[places] = other.half_east_m_per_deg
        self.prefilter_reach_sq[places] = other.prefilter_reach_sq
        self.tree_items[places] = other.tree_items
        self.key_objects[places] = other.key_objects


# Candidates per point from which covering() decides them in one numpy batch
# (where the fixed cost of the array call and the prefilter, ~15-20 us, is
# paid back by the scalar calls' own overhead; re-measured with the prefilter).
_VECTORISE_FROM = 24


class ZoneIndex:
    """An immutable set of zones answering coverage queries.

    Tree item i is zone i: a bounding box for a circle, the polygon itself for
    a polygon zone.  Per-zone numbers live in parallel numpy arrays so that
    covering_many can decide all candidate pairs in a few vectorised calls.
    """

    __slots__ = (
        "_centre_lat",
        "_centre_lon",
        "_half_east_m_per_deg",
        "_is_circle",
        "_key_objects",
        "_key_rank",
        "_keys",
        "_position",
        "_prefilter_reach_sq",
        "_radius_m",
        "_sorted_keys",
        "_tree",
        "_tree_items",
        "_zones",
    )

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        all_zones = tuple(zones)
        keys = tuple(zone.key for zone in all_zones)
        position = _positions_by_key(keys)
        columns = _Columns.of(all_zones)
        # Lets numpy sort ties between equal distances by key, deterministically.
        by_key = np.argsort(columns.key_objects)
        rank = np.empty(len(by_key), dtype=np.intp)
        rank[by_key] = np.arange(len(by_key), dtype=np.intp)
        self._assemble(all_zones, keys, position, columns, rank, columns.key_objects[by_key])

    def _assemble(
        self,
        zones: tuple[Zone, ...],
        keys: tuple[str, ...],
        position: dict[str, int],
        columns: _Columns,
        key_rank: NDArray[np.intp],
        sorted_keys: NDArray[np.object_],
    ) -> None:
        self._zones = zones
        self._keys = keys
        self._position = position
        self._centre_lon = columns.centre_lon
        self._centre_lat = columns.centre_lat
        # NaN radius makes "distance <= radius" false for polygon zones.
        self._radius_m = columns.radius_m
        self._is_circle = columns.is_circle
        self._half_east_m_per_deg = columns.half_east_m_per_deg
        self._prefilter_reach_sq = columns.prefilter_reach_sq
        self._tree_items = columns.tree_items
        self._key_objects = columns.key_objects
        # Each zone's key's place among all the keys, and the keys in that order.
        self._key_rank = key_rank
        self._sorted_keys = sorted_keys
        self._tree = shapely.STRtree(self._tree_items)

    def _columns(self) -> _Columns:
        return _Columns(
            self._centre_lon,
            self._centre_lat,
            self._radius_m,
            self._is_circle,
            self._half_east_m_per_deg,
            self._prefilter_reach_sq,
            self._tree_items,
            self._key_objects,
        )

    def __len__(self) -> int:
        return len(self._zones)

    def __contains__(self, key: object) -> bool:
        return key in self._position

    def keys(self) -> tuple[str, ...]:
        """The keys in the index's own order (a removed zone's place goes to the last one)."""
        return self._keys

    def get(self, key: str) -> Zone | None:
        position = self._position.get(key)
        return None if position is None else self._zones[position]

    def replace(self, zone: Zone) -> ZoneIndex:
        """A new index with zone in place of the one with the same key (or added)."""
        return self.changed(put=[zone])

    def remove(self, key: str) -> ZoneIndex:
        """A new index without the zone with this key; KeyError if there is none."""
        return self.changed(removed=[key])

    def changed(self, put: Iterable[Zone] = (), removed: Iterable[str] = ()) -> ZoneIndex:
        """A new index with the zones of ``put`` in place of those with the same keys (or
        added) and the zones of ``removed`` gone (KeyError for a key it does not hold); a key
        may be named once in all.

        Only the zones changed are worked out anew: the others' numbers are copied and the
        tree is built again over the items as they are. Building every zone's numbers, boxes
        and key order is what a full build spends most of its time on (a third of a second
        at 100k zones), and a town's team changes come one at a time."""
        puts, gone = list(put), list(removed)
        named = [zone.key for zone in puts] + gone
        if len(set(named)) != len(named):
            twice = sorted({key for key in named if named.count(key) > 1})
            raise ZoneError(f"zones changed twice at once: {', '.join(twice)}")
        if self._zones and not gone and all(zone.key in self._position for zone in puts):
            return self._with_replaced(puts)
        zones, keys = list(self._zones), list(self._keys)
        position = self._position.copy()
        # Per place in the new index: where its key was in this one (-1: a key added), and
        # where its numbers can be copied from (-1 as well for a zone put in place).
        key_source = np.arange(len(zones), dtype=np.intp)
        removed_ranks = [int(self._key_rank[self._position[key]]) for key in gone]
        for key in gone:
            place = position.pop(key)
            last = zones.pop()
            keys.pop()
            if place < len(zones):
                zones[place] = last
                keys[place] = last.key
                position[last.key] = place
                key_source[place] = key_source[len(zones)]
            key_source = key_source[: len(zones)]
        number_source = key_source.copy()
        added: list[str] = []
        for zone in puts:
            place = position.setdefault(zone.key, len(zones))
            if place == len(zones):
                zones.append(zone)
                keys.append(zone.key)
                added.append(zone.key)
            else:
                zones[place] = zone
                number_source[place] = -1
        missing = np.full(len(added), -1, dtype=np.intp)
        key_source = np.concatenate([key_source, missing])
        number_source = np.concatenate([number_source, missing])
        fresh = np.flatnonzero(number_source < 0)
        if not self._zones or 2 * len(fresh) > len(zones):
            return ZoneIndex(zones)
        columns = self._columns().taken(number_source)
        columns.put(fresh, _Columns.of([zones[i] for i in fresh.tolist()]))
        rank, sorted_keys = self._ranks_after(key_source, removed_ranks, added)
        index: ZoneIndex = object.__new__(ZoneIndex)
        index._assemble(tuple(zones), tuple(keys), position, columns, rank, sorted_keys)
        return index

    def _with_replaced(self, puts: list[Zone]) -> ZoneIndex:
        """``changed`` where every zone put has its key here already (a team moved, most
        changes): the keys, their places and their order are this index's own."""
        places = np.array([self._position[zone.key] for zone in puts], dtype=np.intp)
        zones = list(self._zones)
        for place, zone in zip(places.tolist(), puts, strict=True):
            zones[place] = zone
        columns = self._columns().taken(np.arange(len(zones), dtype=np.intp))
        columns.put(places, _Columns.of(puts))
        index: ZoneIndex = object.__new__(ZoneIndex)
        index._assemble(
            tuple(zones), self._keys, self._position, columns, self._key_rank, self._sorted_keys
        )
        return index

    def _ranks_after(
        self, key_source: NDArray[np.intp], removed_ranks: list[int], added: list[str]
    ) -> tuple[NDArray[np.intp], NDArray[np.object_]]:
        """The keys' places in key order once ``removed_ranks`` (places among this index's
        keys) are gone and ``added`` are in, without sorting every key again: a key's new
        place is its old one, less the removed keys before it, plus the added ones."""
        gone = np.sort(np.array(removed_ranks, dtype=np.intp))
        added_keys = np.array(added, dtype=object)
        order = np.argsort(added_keys)
        new_keys = added_keys[order]
        # How many of this index's keys come before each added key.
        before = np.searchsorted(self._sorted_keys, new_keys).astype(np.intp)
        rank = np.empty(len(key_source), dtype=np.intp)
        kept = np.flatnonzero(key_source >= 0)
        old = self._key_rank[key_source[kept]]
        rank[kept] = old - np.searchsorted(gone, old) + np.searchsorted(before, old, side="right")
        new_places = before - np.searchsorted(gone, before)
        rank[np.flatnonzero(key_source < 0)[order]] = new_places + np.arange(len(added))
        sorted_keys = np.insert(np.delete(self._sorted_keys, gone), new_places, new_keys)
        return rank, sorted_keys

    def covering(self, lon: float, lat: float) -> list[Hit]:
        """Zones covering the WGS-84 point, nearest centre/anchor first."""
        check_lon_lat(lon, lat)
        point = shapely.points((lon, lat))
        candidates = self._tree.query(point)
        # For the dozen or so candidates of one point a plain loop is faster;
        # where zones pile up (a hundred candidates in a dense city) one
        # vectorised geodesic call over all of them wins, after a cheaper
        # estimate has dropped the circles the point is surely outside.
        if len(candidates) >= _VECTORISE_FROM:
            return self._hits_vectorised(candidates, lon, lat, point)
        return self._hits_one_by_one(candidates.tolist(), lon, lat, point)

    def _hits_vectorised(
        self, candidates: NDArray[np.intp], lon: float, lat: float, point: Any
    ) -> list[Hit]:
        centre_lons, centre_lats = self._centre_lon[candidates], self._centre_lat[candidates]
        # Only candidates surely outside are dropped: hits keep their Geod.inv distance.
        east, north = _metres_per_degree_at(lat)
        maybe = self._maybe_covered(candidates, centre_lons, centre_lats, lon, lat, east, north)
        candidates = candidates[maybe]
        count = len(candidates)
        distances = _geodesic_m(
            centre_lons[maybe],
            centre_lats[maybe],
            np.full(count, lon, dtype=np.float64),
            np.full(count, lat, dtype=np.float64),
        )
        covered: NDArray[np.bool_] = distances <= self._radius_m[candidates]
        polygons = np.flatnonzero(~self._is_circle[candidates])
        if polygons.size:
            covered[polygons] = shapely.covers(self._tree_items[candidates[polygons]], point)
        candidates, distances = candidates[covered], distances[covered]
        order = np.lexsort((self._key_rank[candidates], distances))
        return _hits(self._key_objects[candidates[order]].tolist(), distances[order].tolist())

    def _maybe_covered(
        self,
        zone_idx: NDArray[np.intp],
        centre_lons: NDArray[np.float64],
        centre_lats: NDArray[np.float64],
        lons: float | NDArray[np.float64],
        lats: float | NDArray[np.float64],
        east_m_per_deg: float | NDArray[np.float64],
        north_m_per_deg: float | NDArray[np.float64],
    ) -> NDArray[np.bool_]:
        """False where the point is surely outside the circle; the scales are the point's."""
        distances_sq = _plane_distance_sq_m2(
            centre_lons,
            centre_lats,
            self._half_east_m_per_deg[zone_idx],
            lons,
            lats,
            east_m_per_deg,
            north_m_per_deg,
        )
        maybe: NDArray[np.bool_] = distances_sq <= self._prefilter_reach_sq[zone_idx]
        return maybe

    def _hits_one_by_one(
        self, candidates: list[int], lon: float, lat: float, point: Any
    ) -> list[Hit]:
        inverse = wgs84_geod().inv
        hits: list[Hit] = []
        for zone in map(self._zones.__getitem__, candidates):
            # Always centre -> point, the argument order covering_many uses
            # too, so both give bit-identical distances.
            if isinstance(zone, CircleZone):
                _, _, distance = inverse(zone.lon, zone.lat, lon, lat)
                if distance <= zone.radius_m:
                    hits.append(Hit(zone.key, distance))
            elif shapely.covers(zone.geometry, point):
                _, _, distance = inverse(zone.anchor_lon, zone.anchor_lat, lon, lat)
                hits.append(Hit(zone.key, distance))
        hits.sort(key=_hit_order)
        return hits

    def covering_many(self, lons: ArrayLike, lats: ArrayLike) -> list[list[Hit]]:
        """covering() for many points at once: one tree query, one distance batch."""
        lon_array, lat_array = _checked_point_arrays(lons, lats)
        points = shapely.points(lon_array, lat_array)
        point_idx, zone_idx = self._tree.query(points)
        point_idx, zone_idx = self._maybe_covered_pairs(point_idx, zone_idx, lon_array, lat_array)
        # Same argument order as covering(): centre -> point, bit-identical.
        distances = _geodesic_m(
            self._centre_lon[zone_idx],
            self._centre_lat[zone_idx],
            lon_array[point_idx],
            lat_array[point_idx],
        )
        covered = self._covered_pairs(point_idx, zone_idx, points, distances)
        point_idx, zone_idx, distances = point_idx[covered], zone_idx[covered], distances[covered]
        order = np.lexsort((self._key_rank[zone_idx], distances, point_idx))
        return self._group_hits(len(lon_array), point_idx[order], zone_idx[order], distances[order])

    def _maybe_covered_pairs(
        self,
        point_idx: NDArray[np.intp],
        zone_idx: NDArray[np.intp],
        lons: NDArray[np.float64],
        lats: NDArray[np.float64],
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """The (point, zone) pairs left after dropping those surely outside."""
        east, north = _metres_per_degree(lats)
        maybe = self._maybe_covered(
            zone_idx,
            self._centre_lon[zone_idx],
            self._centre_lat[zone_idx],
            lons[point_idx],
            lats[point_idx],
            east[point_idx],
            north[point_idx],
        )
        return point_idx[maybe], zone_idx[maybe]

    def _distances_from_centres(
        self, zone_idx: NDArray[np.intp], lons: NDArray[np.float64], lats: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        return _geodesic_m(self._centre_lon[zone_idx], self._centre_lat[zone_idx], lons, lats)

    def _covered_pairs(
        self,
        point_idx: NDArray[np.intp],
        zone_idx: NDArray[np.intp],
        points: Any,
        distances: NDArray[np.float64],
    ) -> NDArray[np.bool_]:
        covered: NDArray[np.bool_] = distances <= self._radius_m[zone_idx]
        polygon_pairs = np.flatnonzero(~self._is_circle[zone_idx])
        if polygon_pairs.size:
            tree_items = self._tree_items[zone_idx[polygon_pairs]]
            covered[polygon_pairs] = shapely.covers(tree_items, points[point_idx[polygon_pairs]])
        return covered

    def _group_hits(
        self,
        n_points: int,
        point_idx: NDArray[np.intp],
        zone_idx: NDArray[np.intp],
        distances: NDArray[np.float64],
    ) -> list[list[Hit]]:
        """Hits split by point; the pairs come sorted by point."""
        hits = _hits(self._key_objects[zone_idx].tolist(), distances.tolist())
        ends = np.cumsum(np.bincount(point_idx, minlength=n_points)).tolist()
        return [hits[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]

    def within(
        self, lon: float, lat: float, radius_m: float, keys_filter: AbstractSet[str] | None = None
    ) -> list[Hit]:
        """Circle zones whose centre is within radius_m of the point, nearest first.

        keys_filter, when given, restricts the answer to those keys.
        """
        check_lon_lat(lon, lat)
        radius = finite_float(radius_m)
        if radius is None or radius < 0:
            raise ValueError("radius_m must be a non-negative finite number")
        # A circle's tree box contains its centre, so a box around the query
        # ring that contains every centre within reach meets all of them.
        search_box = _circle_boxes(np.array([lon]), np.array([lat]), np.array([radius_m]))[0]
        candidates = self._tree.query(search_box)
        candidates = candidates[self._is_circle[candidates]]
        if keys_filter is not None:
            wanted = [i for i in candidates.tolist() if self._keys[i] in keys_filter]
            candidates = np.array(wanted, dtype=np.intp)
        distances = self._distances_from_centres(
            candidates,
            np.full(len(candidates), lon, dtype=np.float64),
            np.full(len(candidates), lat, dtype=np.float64),
        )
        inside = distances <= radius_m
        candidates, distances = candidates[inside], distances[inside]
        order = np.lexsort((self._key_rank[candidates], distances))
        return _hits(self._key_objects[candidates[order]].tolist(), distances[order].tolist())


def _geodesic_m(
    lons1: NDArray[np.float64],
    lats1: NDArray[np.float64],
    lons2: NDArray[np.float64],
    lats2: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Geod.inv distances, element-wise; the arrays must be fresh: they are overwritten."""
    # inplace spares pyproj four copies of arrays that nobody reads again.
    _, _, distances = wgs84_geod().inv(lons1, lats1, lons2, lats2, inplace=True)
    return np.asarray(distances, dtype=np.float64)


def _hit_order(hit: Hit) -> tuple[float, str]:
    return hit.distance_m, hit.key


def _positions_by_key(keys: Sequence[str]) -> dict[str, int]:
    position = {key: i for i, key in enumerate(keys)}
    if len(position) != len(keys):
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        raise ZoneError(f"duplicate zone keys: {', '.join(duplicates)}")
    return position


def _centre(zone: Zone) -> LonLat:
    if isinstance(zone, CircleZone):
        return zone.lon, zone.lat
    return zone.anchor_lon, zone.anchor_lat


def _radius_or_nan(zone: Zone) -> float:
    return zone.radius_m if isinstance(zone, CircleZone) else math.nan


def _checked_point_arrays(
    lons: ArrayLike, lats: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    lon_array = _axis_array("lon", lons, 180.0)
    lat_array = _axis_array("lat", lats, 90.0)
    if lon_array.ndim != 1 or lon_array.shape != lat_array.shape:
        raise ValueError("lons and lats must be 1-D arrays of the same length")
    _check_axis_array("lon", lon_array, 180.0)
    _check_axis_array("lat", lat_array, 90.0)
    return lon_array, lat_array


def _axis_array(field: str, values: ArrayLike, limit: float) -> NDArray[np.float64]:
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:
        # An integer too large for a float: far out of range.
        raise CoordinateError(field, f"{field} must be within [{-limit:g}, {limit:g}]") from None


def _check_axis_array(field: str, values: NDArray[np.float64], limit: float) -> None:
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite | (np.abs(values) > limit))
    if bad.size:
        first = int(bad[0])
        problem = f"within [{-limit:g}, {limit:g}]" if finite[first] else "a finite number"
        raise CoordinateError(field, f"{field} must be {problem} (at index {first})")


# --- GeoJSON ------------------------------------------------------------------


_Built = TypeVar("_Built")

# A zone is a town's area at most: a village is kilometres across, a police zone some tens of
# kilometres.  Anything wider than this is a mistake, and one that does harm: a world-sized
# square holds every incident, and a polygon drawn across the 180th meridian comes out as its
# complement, the rest of the world.  Checked on the numbers as sent, before any work.
MAX_ZONE_SPAN_DEG = 2.0

# Edges drawn in GCJ-02 or BD-09 are straight in that system, not in WGS-84: the shift between
# them wobbles (BD-09's angle term with a period of 0.12 degrees of longitude, GCJ-02's series
# with periods of 1/3 degree and more), so converting only the corners moved the edges of a
# 0.05-degree square by up to 29 m (BD-09) and 4.4 m (GCJ-02).  Each edge is therefore cut into
# pieces of at most this many degrees in its own system and every cut is converted.  A piece of
# length L then strays from the true image of the edge by at most (A k^2 / 8) L^2, where A k^2
# bounds the shift's second derivative: for BD-09 3e-6 rad * ~116 deg * (3000 pi / 180)^2 ~ 0.96
# deg per deg^2, so 0.001 degrees (about 100 m) gives 1.2e-7 degrees, 1.3 cm (GCJ-02: under
# 1 mm); random edges around Qingxi measure 13 mm and 0.7 mm at worst
# (tests/geo/test_geo_zone_geojson.py checks points 3 m either side of drawn edges).  The cost:
# one converted position per 100 m of edge.
MAX_SHIFTED_EDGE_DEG = 0.001


class _VertexBudget:
    """Counts positions so that oversized input is refused before any work.

    The limit is on the positions the user sent; the ones added along edges drawn in a shifted
    system have an allowance of the same size, so a few long edges cannot make a zone of
    millions of points.
    """

    def __init__(self, limit: int) -> None:
        self.remaining = limit
        self.added_remaining = limit
        self.limit = limit

    def spend(self, count: int) -> None:
        self.remaining -= count
        if self.remaining < 0:
            raise ZoneError(f"zone has more than {self.limit} vertices")

    def spend_added(self, count: int, crs: CRS) -> None:
        self.added_remaining -= count
        if self.added_remaining < 0:
            raise ZoneError(
                f"zone edges are too long to convert from {crs.value}: they need more than "
                f"{self.limit} added points (one every {MAX_SHIFTED_EDGE_DEG:g} degrees)"
            )


# A ring as sent: its path for messages and its positions in the source system.
_RawRing: TypeAlias = tuple[str, list[LonLat]]


def parse_zone_geojson(
    obj: object,
    crs: CRS = CRS.WGS84,
    max_vertices: int = 10_000,
    max_span_deg: float = MAX_ZONE_SPAN_DEG,
) -> Polygon | MultiPolygon:
    """Validate a GeoJSON Polygon/MultiPolygon in crs and return it in WGS-84.

    Every problem is reported as a ZoneError whose message names the
    offending place, e.g. "coordinates[0][3]: lat must be within [-90, 90]".
    Edges are straight lines in crs as drawn: in GCJ-02 and BD-09 they are
    cut every MAX_SHIFTED_EDGE_DEG before converting.
    """
    system = _zone_crs(crs)
    if not isinstance(obj, Mapping):
        raise ZoneError("zone must be a GeoJSON object")
    kind = obj.get("type")
    coordinates = obj.get("coordinates")
    budget = _VertexBudget(max_vertices)
    polygons: list[list[_RawRing]]
    if kind == "Polygon":
        polygons = [_parse_polygon(coordinates, "coordinates", budget)]
    elif kind == "MultiPolygon":
        polygons = _parse_multipolygon(coordinates, budget)
    else:
        raise ZoneError(f"zone type must be Polygon or MultiPolygon, not {kind!r}")
    _check_span(polygons, max_span_deg)
    built = [_build_polygon(rings, system, budget) for rings in polygons]
    geometry: Polygon | MultiPolygon = (
        built[0] if kind == "Polygon" else _build(lambda: MultiPolygon(built))
    )
    if not geometry.is_valid:
        raise ZoneError(f"invalid zone geometry: {explain_validity(geometry)}")
    return geometry


def _check_span(polygons: list[list[_RawRing]], max_span_deg: float) -> None:
    positions = np.array(
        [position for rings in polygons for _, ring in rings for position in ring],
        dtype=np.float64,
    )
    spans = positions.max(axis=0) - positions.min(axis=0)
    span = float(spans.max())
    if span > max_span_deg:
        axis = "longitude" if spans[0] >= spans[1] else "latitude"
        raise ZoneError(
            f"zone spans {span:g} degrees of {axis}; a zone spans at most {max_span_deg:g} "
            "degrees (a zone cannot cross the 180th meridian)"
        )


def zone_to_geojson(geometry: Polygon | MultiPolygon, crs: CRS = CRS.WGS84) -> dict[str, Any]:
    """GeoJSON for a WGS-84 zone geometry, optionally shifted into crs for display."""
    system = _zone_crs(crs)
    if system is not CRS.WGS84:
        geometry = shapely.transform(geometry, lambda xy: _shift_vertices(xy, system))
    as_mapping = mapping(geometry)
    return {"type": as_mapping["type"], "coordinates": _nested_lists(as_mapping["coordinates"])}


def _zone_crs(crs: CRS) -> CRS:
    try:
        return CRS(crs)
    except ValueError:
        raise ZoneError(f"unknown coordinate system {crs!r}") from None


def _shift_vertices(xy: NDArray[np.float64], system: CRS) -> NDArray[np.float64]:
    return np.array([from_wgs84(lon, lat, system) for lon, lat in xy.tolist()], dtype=np.float64)


def _nested_lists(value: object) -> object:
    # mapping() yields tuples; lists make the result equal to parsed JSON.
    if isinstance(value, tuple | list):
        return [_nested_lists(item) for item in value]
    return value


def _parse_multipolygon(value: object, budget: _VertexBudget) -> list[list[_RawRing]]:
    members = _as_list(value, "coordinates", "a list of polygons")
    if not members:
        raise ZoneError("coordinates: a MultiPolygon needs at least one polygon")
    return [_parse_polygon(member, f"coordinates[{i}]", budget) for i, member in enumerate(members)]


def _parse_polygon(value: object, path: str, budget: _VertexBudget) -> list[_RawRing]:
    rings = _as_list(value, path, "a list of linear rings")
    if not rings:
        raise ZoneError(f"{path}: a Polygon needs at least one linear ring")
    return [_parse_ring(ring, f"{path}[{i}]", budget) for i, ring in enumerate(rings)]


def _parse_ring(value: object, path: str, budget: _VertexBudget) -> _RawRing:
    positions = _as_list(value, path, "a list of positions")
    if positions and _is_number(positions[0]):
        raise ZoneError(f"{path}: expected a list of positions, got numbers (nesting too shallow?)")
    if len(positions) < 4:
        raise ZoneError(f"{path}: a linear ring needs at least 4 positions, got {len(positions)}")
    budget.spend(len(positions))
    raw = [_parse_position(position, f"{path}[{i}]") for i, position in enumerate(positions)]
    if raw[0] != raw[-1]:
        raise ZoneError(f"{path}: linear ring is not closed (first and last positions differ)")
    return path, raw


def _build_polygon(rings: list[_RawRing], crs: CRS, budget: _VertexBudget) -> Polygon:
    shell, *holes = [_wgs84_ring(path, raw, crs, budget) for path, raw in rings]
    return _build(lambda: Polygon(shell, holes))


def _wgs84_ring(path: str, raw: list[LonLat], crs: CRS, budget: _VertexBudget) -> list[LonLat]:
    """The ring in WGS-84; drawn in a shifted system, with its edges cut before converting."""
    if crs is CRS.WGS84:
        return [_converted(lon, lat, f"{path}[{i}]", crs) for i, (lon, lat) in enumerate(raw)]
    starts = np.array(raw[:-1], dtype=np.float64)
    steps = np.diff(np.array(raw, dtype=np.float64), axis=0)
    pieces = np.maximum(np.ceil(np.hypot(steps[:, 0], steps[:, 1]) / MAX_SHIFTED_EDGE_DEG), 1)
    counts = pieces.astype(np.intp)
    budget.spend_added(int(counts.sum()) - len(counts), crs)
    edge = np.repeat(np.arange(len(counts)), counts)
    # The k-th of an edge's n pieces starts k/n of the way along it; k = 0 is the corner.
    first = np.cumsum(counts) - counts
    fractions = (np.arange(len(edge)) - first[edge]) / pieces[edge]
    points = starts[edge] + fractions[:, None] * steps[edge]
    # The corners as sent, not as recomputed (start + 0 * step is the same number anyway).
    points[first] = starts
    ring = [
        _converted(lon, lat, f"{path}[{i}]", crs)
        for i, (lon, lat) in zip(edge.tolist(), points.tolist(), strict=True)
    ]
    ring.append(ring[0])
    return ring


def _parse_position(value: object, path: str) -> LonLat:
    position = _as_list(value, path, "a position [lon, lat]")
    # A third number (altitude) is legal GeoJSON and ignored, but it must be a number.
    if len(position) not in (2, 3):
        raise ZoneError(f"{path}: a position must be 2 or 3 numbers [lon, lat(, alt)]")
    if len(position) == 3:
        _altitude(position[2], path)
    lon = _coordinate(position[0], path, "lon", 180.0)
    lat = _coordinate(position[1], path, "lat", 90.0)
    try:
        check_lon_lat(lon, lat)
    except CoordinateError as error:
        raise ZoneError(f"{path}: {error.message}") from error
    return lon, lat


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int subclass, but true/false in a coordinate is a client bug.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coordinate(value: object, path: str, axis: str, limit: float) -> float:
    if not _is_number(value):
        raise ZoneError(f"{path}: coordinates must be numbers")
    number = finite_float(value)
    if number is None and isinstance(value, int):
        # An integer too large for a float (JSON allows any number of digits).
        raise ZoneError(f"{path}: {axis} must be within [{-limit:g}, {limit:g}]")
    if number is None:
        raise ZoneError(f"{path}: coordinates must be finite numbers")
    return number


def _altitude(value: object, path: str) -> None:
    if not _is_number(value) or finite_float(value) is None:
        raise ZoneError(f"{path}: altitude (the third number) must be a finite number")


def _converted(lon: float, lat: float, path: str, crs: CRS) -> LonLat:
    try:
        return to_wgs84(lon, lat, crs)
    except CoordinateError as error:
        raise ZoneError(f"{path}: {error.message}") from error


def _as_list(value: object, path: str, expected: str) -> list[object] | tuple[object, ...]:
    if not isinstance(value, list | tuple):
        raise ZoneError(f"{path}: expected {expected}")
    return value


def _build(make: Callable[[], _Built]) -> _Built:
    try:
        return make()
    except (GEOSException, ValueError) as error:
        raise ZoneError(f"cannot build zone geometry: {error}") from error

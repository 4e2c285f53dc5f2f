from __future__ import annotations

from typing import Any

from pydantic import Field

from dispatch.schemas import LocalTime, Schema


class VillageOut(Schema):
    id: str
    name: str
    area_m2: float = Field(description="geodesic area of the boundary, square metres")
    boundary: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon, WGS84")
    created_at: LocalTime
    updated_at: LocalTime


class VillageNameOut(Schema):
    id: str
    name: str


class VillageImportOut(Schema):
    created: list[str] = Field(description="names of villages that were new")
    updated: list[str] = Field(description="names of villages whose boundary was replaced")
    retagged: int = Field(description="incidents whose village changed because of this import")


class CoverageOut(Schema):
    tier: int
    village_id: str | None = Field(description="the village measured, or null for the whole town")
    boundary_name: str
    zones: int = Field(description="active zones of the tier that were counted")
    boundary_area_m2: float
    covered_area_m2: float
    uncovered_area_m2: float
    covered_share: float = Field(description="covered area / boundary area, 0..1")
    method: str = Field(description="how the circles and areas were computed")
    geojson: dict[str, Any] = Field(
        description='FeatureCollection of two features, properties.part "covered" and '
        '"uncovered", each with properties.area_m2'
    )

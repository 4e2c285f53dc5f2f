from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class Village(Base):
    """A village or community (村/社区): the boundary incidents are tagged and reported by."""

    __tablename__ = "villages"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # GeoJSON Polygon or MultiPolygon in WGS84.
    boundary: Mapped[dict[str, Any]]
    area_m2: Mapped[float]
    # The boundary's bounding box, so finding a point's village reads only nearby rows.
    min_lon: Mapped[float]
    min_lat: Mapped[float]
    max_lon: Mapped[float]
    max_lat: Mapped[float]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

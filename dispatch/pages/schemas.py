from __future__ import annotations

from pydantic import Field

from dispatch.schemas import Schema


class PageConfig(Schema):
    """What a page needs to know before it talks to the API: the map's base tiles and view,
    and how it looks after its websocket."""

    tile_url: str | None = Field(description="Leaflet URL template; none: plain background")
    tile_crs: str = Field(description="coordinate system of the tiles: wgs84 or gcj02")
    tile_subdomains: str
    tile_attribution: str
    tile_max_zoom: int
    map_center: tuple[float, float] = Field(description="lon, lat (WGS84) when no team is known")
    map_zoom: int
    chain_targets: tuple[float, float, float]
    live_ping_s: float = Field(description="seconds of silence on the websocket before a ping")
    live_timeout_s: float = Field(
        description="seconds after that with nothing heard before the socket is given up"
    )
    request_timeout_s: float = Field(
        description="seconds the console and the phone wait for a request's answer before they "
        "take it as failed by the network (and send a tap again)"
    )

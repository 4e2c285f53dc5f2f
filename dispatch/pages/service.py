"""The pages, built from web/ by npm into the package's static folder and served here."""

from __future__ import annotations

import json
from pathlib import Path

from dispatch.config import Settings
from dispatch.pages.schemas import PageConfig

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGES = {"console": "console.html", "phone": "m.html", "reports": "reports.html"}
CONFIG_SLOT = "<!--config-->"


class PagesNotBuilt(Exception):
    """The front-end was not built into the package (npm missing when it was installed)."""


def page_config(settings: Settings) -> PageConfig:
    return PageConfig(
        tile_url=settings.tile_url or None,
        tile_crs=settings.tile_crs,
        tile_subdomains=settings.tile_subdomains,
        tile_attribution=settings.tile_attribution,
        tile_max_zoom=settings.tile_max_zoom,
        map_center=(settings.map_center_lon, settings.map_center_lat),
        map_zoom=settings.map_zoom,
        chain_targets=settings.chain_targets,
        live_ping_s=settings.ws_client_ping_s,
        live_timeout_s=settings.ws_client_timeout_s,
        request_timeout_s=settings.page_request_timeout_s,
    )


def render_page(page: str, settings: Settings, static_dir: Path = STATIC_DIR) -> str:
    """The built HTML with this server's settings in a JSON block the page reads at start."""
    path = static_dir / PAGES[page]
    try:
        html = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PagesNotBuilt(str(path)) from None
    payload = json.dumps(page_config(settings).model_dump(mode="json"), ensure_ascii=False)
    # "</" inside a script element would end it early; JSON allows the escaped form.
    payload = payload.replace("</", "<\\/")
    block = f'<script id="dispatch-config" type="application/json">{payload}</script>'
    return html.replace(CONFIG_SLOT, block, 1)


def content_security_policy(settings: Settings) -> str:
    # Scripts and styles only from this server; tiles from wherever the tile URL points.
    images = "'self' data:" + (" https: http:" if settings.tile_url else "")
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {images}",
            "connect-src 'self' ws: wss:",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'self'",
        ]
    )

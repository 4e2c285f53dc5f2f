from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response

from dispatch.audit import service as audit
from dispatch.auth.models import Role
from dispatch.deps import AdminDep, RuntimeDep, SessionDep, require
from dispatch.errors import error_response
from dispatch.rosters.files import file_facts, read_capped
from dispatch.routing import api_router
from dispatch.villages import service
from dispatch.villages.schemas import CoverageOut, VillageImportOut, VillageNameOut, VillageOut
from geo.crs import CRS

router = api_router("/api/v1/villages", tags=["villages"])
coverage_router = api_router("/api/v1/coverage", tags=["villages"])
_Viewer = Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.LEADER))
_Office = Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))

_GEOJSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a GeoJSON FeatureCollection of Polygon/MultiPolygon features, each with "
        'properties.name (or "名称")',
        "content": {
            "application/geo+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: error_response(413, "larger than DISPATCH_MAX_UPLOAD_BYTES"),
    422: error_response(
        422,
        "not a JSON document (field: body), or bad features (error: file_rejected, every "
        "problem listed in problems, each with its field): nothing written",
    ),
}


@router.post(
    "/import", response_model=VillageImportOut, openapi_extra=_GEOJSON_BODY, responses=_REFUSALS
)
async def import_villages(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    admin: AdminDep,
    crs: Annotated[
        CRS | None,
        Query(
            description="coordinate system of the file's coordinates (gcj02 for AMap's or "
            "Tencent's, bd09 for Baidu's); a crs the file states must be this one. Omitted: "
            "the one the file states, else wgs84"
        ),
    ] = None,
) -> VillageImportOut:
    """Add villages/communities, or replace the boundary of those with the same name. Incidents
    are re-tagged with the village they fall in.

    Imports and deletions take turns: one that arrives while another is under way waits for
    it to commit, then reads the villages as it left them. The same file sent twice at once
    creates its villages once; the second answer lists them as updated (to the same
    boundaries)."""
    data = await read_capped(request, runtime.settings.max_upload_bytes)
    result = await service.import_villages(
        session,
        data,
        crs=crs,
        now=runtime.clock.now(),
        max_vertices=runtime.settings.max_village_vertices,
        villages=runtime.villages,
        actor_id=admin.user_id,
    )
    audit.note(
        session,
        file=file_facts(data),
        crs=(crs or CRS.WGS84).value,
        **result.model_dump(mode="json"),
    )
    return result


@router.get("", response_model=list[VillageOut], dependencies=[_Viewer])
async def list_villages(session: SessionDep) -> list[VillageOut]:
    return [service.village_out(v) for v in await service.list_villages(session)]


# Declared before /{village_id}, which would take "names" for an id.
@router.get("/names", response_model=list[VillageNameOut], dependencies=[_Viewer])
async def village_names(session: SessionDep) -> list[VillageNameOut]:
    """Every village's id and name, by name, without its boundary: what a filter or a label
    needs."""
    return await service.village_names(session)


@router.get("/{village_id}", response_model=VillageOut, dependencies=[_Viewer])
async def get_village(village_id: str, session: SessionDep) -> VillageOut:
    return service.village_out(await service.get_village(session, village_id))


@router.delete("/{village_id}", status_code=204, response_class=Response)
async def delete_village(
    village_id: str, runtime: RuntimeDep, session: SessionDep, admin: AdminDep
) -> Response:
    """Its incidents are re-tagged (to an overlapping village, or to none)."""
    await service.delete_village(
        session, village_id, runtime.villages, now=runtime.clock.now(), actor_id=admin.user_id
    )
    return Response(status_code=204)


@coverage_router.get(
    "",
    response_model=CoverageOut,
    dependencies=[_Office],
    responses={404: error_response(404, "village_id names no village")},
)
async def coverage(
    session: SessionDep,
    tier: Annotated[int, Query(ge=1, le=3, description="which tier's zones")] = 1,
    village_id: Annotated[
        str | None, Query(description="measure this village; omit for the whole town")
    ] = None,
) -> CoverageOut:
    """Covered and uncovered parts of a boundary as GeoJSON, with geodesic areas in m²."""
    return await service.coverage(session, tier, village_id)

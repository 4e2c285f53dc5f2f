// Leaflet with configurable base tiles. Everything the server sends is WGS84; Chinese tiles
// (Amap, Tencent) are drawn in GCJ-02, so overlays are shifted into the tiles' system with
// gcoord, and a point picked on the map is reported in the tiles' system for the server to
// convert back.
import L from 'leaflet';
import gcoord from 'gcoord';
import { h } from './dom.js';
import { t } from './i18n.js';

const SYSTEMS = { wgs84: gcoord.WGS84, gcj02: gcoord.GCJ02 };
// The systems a point may be typed in (Baidu's only as numbers: its tiles are not drawn).
const TYPED = { wgs84: gcoord.WGS84, gcj02: gcoord.GCJ02, bd09: gcoord.BD09 };

export const ZONE_STYLE = {
  fixed_post: { color: '#1d4ed8', fillOpacity: 0.12, weight: 2 },
  mobile: { color: '#047857', fillOpacity: 0.08, weight: 2 },
  patrol: { color: '#7c3aed', fillOpacity: 0.03, weight: 1, dashArray: '6 6' },
  response: { color: '#b45309', fillOpacity: 0.02, weight: 1, dashArray: '2 6' },
};

export function createMap(element, config, options) {
  const small = !!(options && options.small);
  const tileCrs = SYSTEMS[config.tile_crs] ? config.tile_crs : 'wgs84';
  const map = L.map(element, {
    zoomControl: !small,
    attributionControl: !!config.tile_url,
    keyboard: !small,
    // The small map comes and goes with the alert screen: a zoom animation still running when
    // it is removed would throw inside Leaflet.
    zoomAnimation: !small,
    fadeAnimation: !small,
    markerZoomAnimation: !small,
  });
  if (config.tile_url) {
    L.tileLayer(config.tile_url, {
      subdomains: config.tile_subdomains || 'abc',
      maxZoom: config.tile_max_zoom || 18,
      attribution: config.tile_attribution || '',
    }).addTo(map);
  } else {
    // No base tiles (an offline control room): a plain background, the scale bar and zones.
    element.classList.add('map-plain');
  }
  L.control.scale({ imperial: false, position: small ? 'bottomleft' : 'bottomleft' }).addTo(map);
  const center = config.map_center || [114.159, 22.847];
  const view = {
    map,
    tileCrs,
    // [lon, lat] in WGS84 -> Leaflet LatLng in the tiles' system.
    toMap(lon, lat) {
      if (tileCrs === 'wgs84') return L.latLng(lat, lon);
      const shifted = gcoord.transform([lon, lat], gcoord.WGS84, SYSTEMS[tileCrs]);
      return L.latLng(shifted[1], shifted[0]);
    },
    // [lon, lat] typed in `crs` -> Leaflet LatLng in the tiles' system.
    typedToMap(lon, lat, crs) {
      const from = TYPED[crs] || gcoord.WGS84;
      if (from === SYSTEMS[tileCrs]) return L.latLng(lat, lon);
      const shifted = gcoord.transform([lon, lat], from, SYSTEMS[tileCrs]);
      return L.latLng(shifted[1], shifted[0]);
    },
  };
  map.setView(view.toMap(center[0], center[1]), config.map_zoom || 15);
  translateMap(view);
  return view;
}

// Leaflet's own controls speak English: give them the page's language (again after a switch).
export function translateMap(view) {
  const container = view.map.getContainer();
  for (const [selector, key] of [
    ['.leaflet-control-zoom-in', 'map.zoom_in'],
    ['.leaflet-control-zoom-out', 'map.zoom_out'],
  ]) {
    const button = container.querySelector(selector);
    if (!button) continue;
    button.title = t(key);
    button.setAttribute('aria-label', t(key));
  }
  // Leaflet's own link in the attribution, titled in English.
  const leaflet = container.querySelector('.leaflet-control-attribution a[href="https://leafletjs.com"]');
  if (leaflet) leaflet.title = t('map.leaflet');
}

// Chromium makes a marker with a tooltip a tab stop (Leaflet listens for its focus): a town's
// sites and a busy day's incidents were a hundred stops between the header and the report form.
// The panel says the same (定位 finds an incident on the map), so the markers are left out of
// the tab order; pointing at one still shows its tooltip.
function outOfTabOrder(layer) {
  layer.on('add', () => {
    const el = layer.getElement();
    if (el) el.setAttribute('tabindex', '-1');
  });
  return layer;
}

// A tooltip's content as text. Leaflet puts a string in with innerHTML, and a label holds names
// users typed: a team named `A<b>B</b>` became markup on every console and phone that drew it
// (the page's policy stops scripts, not markup). An element made with textContent shows the
// name as typed.
function textTip(label) {
  return h('span', { text: label });
}

// `renderer`: where the zone and the site are drawn (a canvas shared by a city's thousands of
// teams); by default each is an SVG element of its own.
export function zoneLayer(view, team, renderer) {
  const parts = zoneParts(view, team, renderer);
  const group = L.featureGroup();
  if (parts.zone) parts.zone.addTo(group);
  parts.site.addTo(group);
  return group;
}

// A team's zone (none for a team without one) and its site, apart.
export function zoneParts(view, team, renderer) {
  const style = ZONE_STYLE[team.kind] || ZONE_STYLE.patrol;
  const label = team.name + ' · ' + t('kind.' + team.kind);
  let zone = null;
  if (team.zone) {
    zone = L.geoJSON(team.zone, {
      style: () => style,
      coordsToLatLng: (c) => view.toMap(c[0], c[1]),
      interactive: false,
      renderer,
    });
  } else if (team.radius_m) {
    zone = L.circle(view.toMap(team.location.lon, team.location.lat), {
      radius: team.radius_m,
      interactive: false,
      renderer,
      ...style,
    });
  }
  const site = outOfTabOrder(
    L.circleMarker(view.toMap(team.location.lon, team.location.lat), {
      radius: 4,
      color: style.color,
      fillColor: style.color,
      fillOpacity: 1,
      weight: 1,
      renderer,
    }),
  )
    // Made when first pointed at: a city's thousands of sites held as many elements unseen.
    .bindTooltip(() => textTip(label));
  return { zone, site };
}

export function incidentMarker(view, incident, label) {
  const marker = L.circleMarker(view.toMap(incident.location.lon, incident.location.lat), {
    radius: 9,
    color: '#7f1d1d',
    weight: 2,
    fillColor: '#dc2626',
    fillOpacity: 0.9,
  });
  if (label) outOfTabOrder(marker).bindTooltip(textTip(label));
  return marker;
}

export function draftMarker(latlng) {
  return L.circleMarker(latlng, {
    radius: 7,
    color: '#111827',
    weight: 2,
    dashArray: '3 3',
    fillColor: '#fbbf24',
    fillOpacity: 0.9,
  });
}

export function fitAll(view, layers) {
  const group = L.featureGroup(layers);
  const bounds = group.getBounds();
  if (bounds.isValid()) view.map.fitBounds(bounds, { padding: [20, 20], maxZoom: 17 });
}

export { L };

// Reading coordinates as operators are given them: one number per field as the form asks, but
// also what map apps, phones and colleagues hand over: degrees, minutes and seconds
// (22°50'56.4"N, 22度50分56.4秒), degrees and minutes (22°50.94'), a hemisphere or an axis named
// (北纬 22.849, E114.1612, 纬度：22.849), and a whole pair in one text, lon first as AMap copies it
// or lat first as Google, Apple, Baidu's links and Tencent (WeChat) do.

// Longitudes and latitudes of China: a pair whose order is not said is read by these ranges, and
// only when one number lies in each and not the other way round.
const CHINA_LAT = [3, 54];
const CHINA_LON = [73, 136];

const NUMBER = '(?:\\d+(?:\\.\\d*)?|\\.\\d+)';
const BODY =
  '([-+])?\\s*(' +
  NUMBER +
  ')(?:\\s*°(?:\\s*(' +
  NUMBER +
  ")\\s*'(?:\\s*(" +
  NUMBER +
  ')\\s*")?)?)?';
const LABEL = '(longitude|latitude|lon|lng|lat)\\s*[:=]?\\s*';
// A label, then a hemisphere before the number or after it (not both).
const TOKEN = '(?:' + LABEL + ')?(?:([NSEW])\\s*' + BODY + '|' + BODY + '(?:\\s*([NSEW]))?)';
const ONE = new RegExp('^\\s*' + TOKEN + '\\s*$', 'i');
// Two coordinates: apart by a comma, full-width comma, 、, a semicolon, a slash or spaces.
const PAIR = new RegExp('^\\s*' + TOKEN + '\\s*(?:[,，、;；/]|\\s)\\s*' + TOKEN + '\\s*$', 'i');
const TOKEN_GROUPS = 1 + 5 + 5;

// What a Chinese keyboard, a phone or a map app gives for the same characters.
function normalise(text) {
  return String(text)
    .replace(/[\uff10-\uff19]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xff10 + 48))
    .replace(/[\uff21-\uff3a\uff41-\uff5a]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0))
    .replace(/[。．｡]/g, '.')
    .replace(/[－−–]/g, '-')
    .replace(/＋/g, '+')
    .replace(/[：]/g, ':')
    // Before 度 is read as the degree sign.
    .replace(/经度/g, 'lon')
    .replace(/纬度/g, 'lat')
    .replace(/北纬/g, 'N')
    .replace(/南纬/g, 'S')
    .replace(/东经/g, 'E')
    .replace(/西经/g, 'W')
    .replace(/[º˚度]/g, '°')
    .replace(/[′’‘＇]|分/g, "'")
    .replace(/[″”“＂]|秒|''/g, '"');
}

// One token's match groups (from `at`) as {value, axis, plain}: axis 'lon' or 'lat' when a
// label or a hemisphere says it, plain when it was a bare decimal number; null when the
// minutes or seconds are not minutes or seconds, or a sign contradicts the hemisphere.
function tokenValue(groups, at) {
  const label = groups[at];
  const prefixed = groups[at + 1] !== undefined;
  const hemisphere = (prefixed ? groups[at + 1] : groups[at + 10]) || '';
  const [sign, deg, min, sec] = prefixed ? groups.slice(at + 2, at + 6) : groups.slice(at + 6, at + 10);
  const degrees = Number(deg);
  const minutes = min === undefined ? 0 : Number(min);
  const seconds = sec === undefined ? 0 : Number(sec);
  // 22.5°30' or 22°30.5'15" say nothing one can trust; 60 minutes or seconds are a typo.
  if (min !== undefined && !/^\d+$/.test(deg)) return null;
  if (sec !== undefined && !/^\d+$/.test(min)) return null;
  if (minutes >= 60 || seconds >= 60) return null;
  const h = hemisphere.toUpperCase();
  if (sign && h) return null;
  let axis = null;
  if (h === 'N' || h === 'S') axis = 'lat';
  if (h === 'E' || h === 'W') axis = 'lon';
  if (label) {
    const named = /^l(on|ng)/i.test(label) ? 'lon' : 'lat';
    if (axis && axis !== named) return null;
    axis = named;
  }
  const negative = sign === '-' || h === 'S' || h === 'W';
  const value = (negative ? -1 : 1) * (degrees + minutes / 60 + seconds / 3600);
  const plain = min === undefined && !h && !label;
  return { value, axis, plain };
}

// Whole numbers either side of one comma (114,22; 114,1612): in Chinese usage two values when
// one is a latitude of China and the other a longitude, else a decimal comma (114,1612 is
// 114.1612). True for the pair.
const COMMA = /^([-+]?\d+),(\d+)$/;

function commaPair(normal) {
  const m = COMMA.exec(normal);
  if (!m) return false;
  const a = Number(m[1]);
  const b = Number(m[2]);
  return (inRange(a, CHINA_LAT) && inRange(b, CHINA_LON)) || (inRange(a, CHINA_LON) && inRange(b, CHINA_LAT));
}

// One coordinate as typed into a field: {value, axis, plain, comma} or null. Whole numbers either
// side of a comma are a decimal comma (114,1612, said so: comma) unless they are a pair of China
// (114,22), which is no one coordinate.
export function readOne(text) {
  let normal = normalise(text).trim();
  let comma = false;
  if (COMMA.test(normal)) {
    if (commaPair(normal)) return null;
    normal = normal.replace(',', '.');
    comma = true;
  }
  const m = ONE.exec(normal);
  if (!m) return null;
  const one = tokenValue(m, 1);
  if (one && comma) {
    one.plain = false;
    one.comma = true;
  }
  return one;
}

function inRange(value, [low, high]) {
  return value >= low && value <= high;
}

// A whole pair in one text, or null when it is not one. {lon, lat, latFirst, by, decimal} where `by`
// says how the order was known ('labels': hemispheres or axes named; 'china': one number is a
// latitude of China and the other a longitude) and `decimal` is the one number whole numbers
// either side of a comma read as two (114,22) may have meant (114.22), else null;
// {ambiguous: [a, b]} when nothing says which is which: never guessed.
export function readPair(text) {
  const normal = normalise(text).trim();
  const comma = COMMA.test(normal);
  if (comma && !commaPair(normal)) return null;
  const m = PAIR.exec(normal);
  if (!m) return null;
  const first = tokenValue(m, 1);
  const second = tokenValue(m, 1 + TOKEN_GROUPS);
  if (!first || !second) return null;
  let firstAxis = first.axis;
  let by = 'labels';
  if (firstAxis && second.axis && firstAxis === second.axis) return null;
  if (!firstAxis && second.axis) firstAxis = second.axis === 'lon' ? 'lat' : 'lon';
  if (!firstAxis) {
    by = 'china';
    const a = first.value;
    const b = second.value;
    if (inRange(a, CHINA_LAT) && inRange(b, CHINA_LON)) {
      firstAxis = 'lat';
    } else if (inRange(a, CHINA_LON) && inRange(b, CHINA_LAT)) {
      firstAxis = 'lon';
    } else {
      return { ambiguous: [a, b] };
    }
  }
  const latFirst = firstAxis === 'lat';
  return {
    lon: latFirst ? second.value : first.value,
    lat: latFirst ? first.value : second.value,
    latFirst,
    by,
    // 114,22: two values by the ranges of China, though it may have meant 114.22.
    decimal: comma ? Number(normal.replace(',', '.')) : null,
  };
}

// Longitude and latitude typed each into the other's field: a latitude of China in the
// longitude field and a longitude of China in the latitude field.
export function looksSwapped(lon, lat) {
  return inRange(lon, CHINA_LAT) && inRange(lat, CHINA_LON);
}

// ---------------------------------------------------------------- map links

// A map's share link (or WeChat's location message) anywhere in the text: what it says of the
// place, in its own order and coordinate system; each map's order and system are its own, so a
// link of a map not known here is refused rather than read by a guess.
const LINK = /(?:https?:\/\/|geo:)[^\s<>"]+/i;
const WECHAT = /<location\b[^>]*>/i;
// Links that only a request to their map would turn into the long one: this page makes none.
const SHORT_HOSTS = ['surl.amap.com', 'j.map.baidu.com', 'maps.app.goo.gl', 'goo.gl', 'url.cn', 't.cn', 'dwz.cn'];

const DECIMAL = /^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$/;

function decimal(text) {
  const s = String(text === undefined || text === null ? '' : text).trim();
  return DECIMAL.test(s) ? Number(s) : NaN;
}

// "a,b" as two decimals, or null.
function twoNumbers(text) {
  if (!text) return null;
  const parts = String(text).split(',');
  if (parts.length < 2) return null;
  const a = decimal(parts[0]);
  const b = decimal(parts[1]);
  return Number.isFinite(a) && Number.isFinite(b) ? [a, b] : null;
}

function onHost(host, domain) {
  return host === domain || host.endsWith('.' + domain);
}

// A point found: checked against the ranges of longitude and latitude.
function found(source, crs, lon, lat, view) {
  if (!Number.isFinite(lon) || !Number.isFinite(lat) || Math.abs(lon) > 180 || Math.abs(lat) > 90) {
    return { refused: 'range', source };
  }
  return { source, crs, lon, lat, view: !!view };
}

function amap(url) {
  const q = url.searchParams;
  const system = (q.get('coordinate') || 'gaode').toLowerCase();
  const crs = system === 'gaode' ? 'gcj02' : system === 'wgs84' ? 'wgs84' : null;
  if (!crs) return { refused: 'system', source: 'amap', system };
  // uri.amap.com/marker?position=lon,lat; ditu.amap.com/regeo?lng=&lat=;
  // www.amap.com/?p=POI,lat,lon,name,address.
  const position = twoNumbers(q.get('position'));
  if (position) return found('amap', crs, position[0], position[1]);
  if (q.has('lng') && q.has('lat')) return found('amap', crs, decimal(q.get('lng')), decimal(q.get('lat')));
  const p = q.get('p');
  if (p) {
    const parts = p.split(',');
    const ll = twoNumbers(parts.slice(1, 3).join(','));
    if (ll) return found('amap', crs, ll[1], ll[0]);
  }
  return { refused: 'none', source: 'amap' };
}

function baidu(url) {
  const q = url.searchParams;
  // Baidu's own longitudes and latitudes unless coord_type says otherwise; its Mercator metres
  // (bd09mc) are no longitude and latitude.
  const system = (q.get('coord_type') || 'bd09ll').toLowerCase();
  const crs = { bd09ll: 'bd09', gcj02: 'gcj02', wgs84: 'wgs84' }[system];
  if (!crs) return { refused: 'system', source: 'baidu', system };
  // api.map.baidu.com/marker?location=lat,lng; map.baidu.com/?latlng=lat,lng.
  const ll = twoNumbers(q.get('location')) || twoNumbers(q.get('latlng'));
  if (ll) return found('baidu', crs, ll[1], ll[0]);
  return { refused: 'none', source: 'baidu' };
}

function tencent(url) {
  const q = url.searchParams;
  // Tencent's (GCJ-02) unless coord_type=1, a GPS's.
  const system = q.get('coord_type') || '2';
  const crs = { 1: 'wgs84', 2: 'gcj02' }[system];
  if (!crs) return { refused: 'system', source: 'tencent', system };
  // apis.map.qq.com/uri/v1/marker?marker=coord:lat,lng;title:…; map.qq.com/?pointx=lon&pointy=lat.
  const coord = /(?:^|;)\s*coord:([^;]*)/.exec(q.get('marker') || '');
  const ll = coord && twoNumbers(coord[1]);
  if (ll) return found('tencent', crs, ll[1], ll[0]);
  if (q.has('pointx') && q.has('pointy')) {
    return found('tencent', crs, decimal(q.get('pointx')), decimal(q.get('pointy')));
  }
  return { refused: 'none', source: 'tencent' };
}

function openStreetMap(url) {
  const q = url.searchParams;
  if (q.has('mlat') && q.has('mlon')) return found('osm', 'wgs84', decimal(q.get('mlon')), decimal(q.get('mlat')));
  // #map=zoom/lat/lon: the map's centre, no marked place.
  const view = /(?:^#|&)map=[\d.]+\/([-+\d.]+)\/([-+\d.]+)/.exec(url.hash);
  if (view) return found('osm', 'wgs84', decimal(view[2]), decimal(view[1]), true);
  return { refused: 'none', source: 'osm' };
}

// The box the server takes as China, where GCJ-02 applies (geo/crs.py, in_china): the GCJ-02
// algorithm's own. It is a rough one: Hong Kong, Macau, Taiwan and neighbouring countries lie
// inside it.
const GCJ02_LON = [72.004, 137.8347];
const GCJ02_LAT = [0.8293, 55.8271];

function inGcj02Box(lon, lat) {
  return inRange(lon, GCJ02_LON) && inRange(lat, GCJ02_LAT);
}

// A Google link's point, in the system Google's map has there: its road map and places in
// mainland China are in GCJ-02, whichever of its domains serves them (only its satellite
// imagery is not), and elsewhere in WGS84. Mainland China is the server's box, so a point in
// Hong Kong, just over the border, is read as GCJ-02 too: the form says so, for the operator
// to check.
function googlePoint(lon, lat, view) {
  const crs = Number.isFinite(lon) && Number.isFinite(lat) && inGcj02Box(lon, lat) ? 'gcj02' : 'wgs84';
  return found('google', crs, lon, lat, view);
}

function google(url) {
  const path = decodeURIComponent(url.pathname);
  // A place's own point: …/data=…!3d<lat>!4d<lon>.
  const places = path.match(/!3d[-+\d.]+!4d[-+\d.]+/g);
  if (places) {
    const m = /!3d([-+\d.]+)!4d([-+\d.]+)/.exec(places[places.length - 1]);
    return googlePoint(decimal(m[2]), decimal(m[1]));
  }
  const q = url.searchParams;
  for (const name of ['q', 'query', 'll', 'center']) {
    const ll = twoNumbers((q.get(name) || '').replace(/\s+/g, ''));
    if (ll) return googlePoint(ll[1], ll[0]);
  }
  // /maps/place/22.849,114.1612 or /maps/search/22.849, 114.1612.
  const named = /\/maps\/(?:place|search)\/([^/@]+)/.exec(path);
  const ll = named && twoNumbers(named[1].replace(/[\s+]+/g, ''));
  if (ll) return googlePoint(ll[1], ll[0]);
  // /maps/@lat,lon,17z: the map's centre, no marked place. A place's link (/maps/place/name/@…)
  // centres the map beside its panel, not on the place: no point of it.
  const view = /^\/maps\/@([-+\d.]+),([-+\d.]+)/.exec(path);
  if (view) return googlePoint(decimal(view[2]), decimal(view[1]), true);
  return { refused: 'none', source: 'google' };
}

// geo:lat,lon[,alt][;crs=…][;u=…][?q=lat,lon(label)] (RFC 5870, and Android's q).
function geoUri(link) {
  const [head, query] = link.slice(4).split('?');
  const [coords, ...params] = head.split(';');
  for (const param of params) {
    const [name, value] = param.split('=');
    if (name.toLowerCase() === 'crs' && (value || '').toLowerCase() !== 'wgs84') {
      return { refused: 'system', source: 'geo', system: value || '' };
    }
  }
  const ll = twoNumbers(coords);
  if (ll && !(ll[0] === 0 && ll[1] === 0)) return found('geo', 'wgs84', ll[1], ll[0]);
  const q = query && /(?:^|&)q=([^&(]*)/.exec(query);
  const asked = q && twoNumbers(decodeURIComponent(q[1]).replace(/\s+/g, ''));
  if (asked) return found('geo', 'wgs84', asked[1], asked[0]);
  return { refused: 'none', source: 'geo' };
}

// WeChat's location message: <location x="lat" y="lon" …/> in Tencent's GCJ-02.
function weChat(tag) {
  const attribute = (name) => {
    const m = new RegExp('\\s' + name + '\\s*=\\s*"([^"]*)"', 'i').exec(tag);
    return m ? m[1] : '';
  };
  const lat = decimal(attribute('x'));
  const lon = decimal(attribute('y'));
  if (!Number.isFinite(lat) || !Number.isFinite(lon)) return { refused: 'none', source: 'wechat' };
  return found('wechat', 'gcj02', lon, lat);
}

// The place a map link in `text` gives, or null when there is no link: {source, crs, lon, lat,
// view} where `source` names the map ('amap', 'baidu', 'tencent', 'wechat', 'osm', 'google',
// 'geo'), `crs` is its system and `view` says the link gives only its map's centre; or
// {refused, source, system} when it gives no point one can trust: 'short' (a short link, read
// only by asking its map), 'none' (no coordinates: a search, a route, a place by its number),
// 'system' (coordinates in a system not read here), 'range' (past ±180 or ±90), 'unknown' (a
// link of another map, whose order and system are not known).
export function readLink(text) {
  const normal = String(text);
  const tag = WECHAT.exec(normal);
  if (tag) return weChat(tag[0]);
  const m = LINK.exec(normal);
  if (!m) return null;
  const link = m[0];
  if (/^geo:/i.test(link)) return geoUri(link);
  let url;
  try {
    url = new URL(link);
  } catch (error) {
    return { refused: 'none', source: null };
  }
  const host = url.hostname.toLowerCase();
  if (SHORT_HOSTS.some((domain) => onHost(host, domain))) return { refused: 'short', source: null };
  if (onHost(host, 'amap.com') || onHost(host, 'gaode.com')) return amap(url);
  if (onHost(host, 'map.baidu.com')) return baidu(url);
  if (onHost(host, 'map.qq.com')) return tencent(url);
  if (onHost(host, 'openstreetmap.org') || onHost(host, 'osm.org')) return openStreetMap(url);
  if (/(^|\.)google(\.com)?\.[a-z]{2,3}$/.test(host) || host === 'google.com') return google(url);
  return { refused: 'unknown', source: null };
}

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

// One coordinate as typed into a field: {value, axis, plain} or null. A single comma with digits
// either side and no point is a decimal comma (114,1612), as the form always read it.
export function readOne(text) {
  let normal = normalise(text).trim();
  if (/^[-+]?\d+,\d+$/.test(normal)) normal = normal.replace(',', '.');
  const m = ONE.exec(normal);
  if (!m) return null;
  return tokenValue(m, 1);
}

function inRange(value, [low, high]) {
  return value >= low && value <= high;
}

// A whole pair in one text, or null when it is not one. {lon, lat, latFirst, by} where `by`
// says how the order was known ('labels': hemispheres or axes named; 'china': one number is a
// latitude of China and the other a longitude); {ambiguous: [a, b]} when nothing says which is
// which: never guessed.
export function readPair(text) {
  const normal = normalise(text).trim();
  if (/^[-+]?\d+,\d+$/.test(normal)) return null;
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
  };
}

// Longitude and latitude typed each into the other's field: a latitude of China in the
// longitude field and a longitude of China in the latitude field.
export function looksSwapped(lon, lat) {
  return inRange(lon, CHINA_LAT) && inRange(lat, CHINA_LON);
}

import { t } from './i18n.js';

const SHANGHAI_MS = 8 * 3600 * 1000;
// How far the server's clock is from this device's (set from the websocket's welcome), so that
// "today" is the server's day, not the device's.
let serverOffsetMs = 0;

export function setServerOffset(offsetMs) {
  serverOffsetMs = Number.isFinite(offsetMs) ? offsetMs : 0;
}

/** The server's date today in Asia/Shanghai, YYYY-MM-DD. */
export function shanghaiToday() {
  return new Date(Date.now() + serverOffsetMs + SHANGHAI_MS).toISOString().slice(0, 10);
}

// The server sends ISO 8601 with +08:00 (Asia/Shanghai): show its wall-clock time in
// Asia/Shanghai whatever time zone this device is set to; HH:MM:SS today, with the date
// (MM-DD, or YYYY-MM-DD in another year) before it on any other day.
export function clockTime(iso) {
  if (!iso) return '';
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) {
    const match = /T(\d\d:\d\d:\d\d)/.exec(iso);
    return match ? match[1] : iso;
  }
  const wall = new Date(at + SHANGHAI_MS).toISOString();
  const day = wall.slice(0, 10);
  const time = wall.slice(11, 19);
  const today = shanghaiToday();
  if (day === today) return time;
  return (day.slice(0, 4) === today.slice(0, 4) ? day.slice(5) : day) + ' ' + time;
}

export function ms(iso) {
  return iso ? Date.parse(iso) : NaN;
}

// An ISO time in whole microseconds since the epoch (Date.parse keeps milliseconds only): the
// server's times carry microseconds, and an arrival is in time up to the microsecond.
export function micros(iso) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(.*)$/.exec(iso || '');
  if (!match) return NaN;
  const fraction = ((match[2] || '') + '000000').slice(0, 6);
  return Date.parse(match[1] + match[3]) * 1000 + Number(fraction);
}

// Tenths below 10 s, whole seconds from there. A time is rounded away from the side of its
// target it is not on: `mode` 'down' for a time in time (a tier met at 59.6 s reads 59 秒, never
// 1 分 00 秒 as if on the minute), 'up' for one late or with no target to be judged by (an
// arrival 60.4 s after the report, late for 60 s, reads 1 分 01 秒 beside 超时, never 1 分 00 秒);
// a clock's offset has no side and goes to the 'nearest'. Counted in whole microseconds, clear
// of binary fractions (0.3 s stays 0.3).
function secondsText(value, mode) {
  const tenths = Math.abs(value) < 10;
  const steps = Math.round(Number(value) * 1e6) / (tenths ? 1e5 : 1e6);
  // Up is towards later, down towards earlier: a latency just under nothing (-0.03 s) rounded
  // up is nothing.
  const round = mode === 'up' ? Math.ceil : mode === 'down' ? Math.floor : Math.round;
  const abs = Math.abs(round(steps));
  return tenths ? (abs / 10).toFixed(1) : String(abs);
}

// What rounds to nothing has no sign: a clock 0.03 s behind agrees, "0.0 s", not "-0.0 s".
function sign(shown, value, plus) {
  if (Number(shown) === 0) return '';
  return value < 0 ? '-' : plus;
}

function withSign(value, mode, plus) {
  const shown = secondsText(value, mode);
  return duration(shown, sign(shown, value, plus));
}

/** A time since an event (a latency), rounded up. */
export function seconds(value) {
  return withSign(value, 'up', '');
}

/** A tier's time taken: rounded down when `inTime` (met, on or under the target), else up. */
export function secondsTaken(value, inTime) {
  return withSign(value, inTime ? 'down' : 'up', '');
}

/** A latency with its sign: rounded up, or down for an arrival in time (`inTime`). */
export function signedSeconds(value, inTime) {
  return withSign(value, inTime ? 'down' : 'up', '+');
}

/** How far one clock is from another, to the nearest shown step. */
export function offsetSeconds(value) {
  return withSign(value, 'nearest', '+');
}

// Rounded up to the next 0.1 s, so that a time over its target never reads as at or under it
// (60.04 s shows 60.1, not 60.0; exactly 60 s shows 60.0). Times are whole microseconds: the
// tenths are counted from those, clear of binary fractions (0.3 s is 0.3, not 0.4).
export function secondsUp(value) {
  return secondsAgainst(value, null);
}

// As secondsUp, but rounded down for a time on or under its target (`target`, seconds; null
// for none): a time never reads on the wrong side of its target, 59.96 s under 60 reads 59.9,
// 60.04 s over it 60.1, exactly 60 s 60.0. The live pages round a tier's time so too.
export function secondsAgainst(value, target) {
  if (value === null || value === undefined) return '—';
  const steps = Math.round(Number(value) * 1e6) / 1e5;
  const inTime = target !== null && target !== undefined && Number(value) <= target;
  const tenths = inTime ? Math.floor(steps) : Math.ceil(steps);
  return (tenths / 10).toFixed(1);
}

// A time of a minute or more as minutes and seconds, "3 分 07.3 秒" / "3 min 07.3 s": 187.3 秒
// left the reader to divide by 60; from an hour on as hours, minutes and seconds, "1 小时 16 分
// 00 秒" / "1 h 16 min 00 s", never minutes past sixty (76 分 00 秒), as the clocks read 1:16:00.
// It takes the seconds as already rounded for showing ("187.3", "60"), so it keeps their
// rounding and their decimals, and the split cannot make a 60th second or minute (179.96 s
// rounded up is 180.0: 3 分 00.0 秒; 3599.96 s is 1 小时 00 分 00.0 秒). Below a minute, null:
// each page shows those its own way.
export function minutesAndSeconds(shown, signText) {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(String(shown));
  if (!match) return null;
  const decimals = match[2] ? match[2].length : 0;
  const scale = Math.pow(10, decimals);
  // Counted in whole units of the last decimal, clear of binary fractions.
  const units = Number(match[1]) * scale + (decimals ? Number(match[2]) : 0);
  const perMinute = 60 * scale;
  if (units < perMinute) return null;
  const perHour = 60 * perMinute;
  const hours = Math.floor(units / perHour);
  const minutes = Math.floor((units - hours * perHour) / perMinute);
  const rest = units - hours * perHour - minutes * perMinute;
  // Two digits of seconds, as on a clock: 3 分 07.3 秒; and of minutes after hours: 1 小时 02 分.
  const text = (rest < 10 * scale ? '0' : '') + (rest / scale).toFixed(decimals);
  const sign = signText || '';
  if (!hours) return t('unit.min_s', { m: sign + minutes, s: text });
  const m = (minutes < 10 ? '0' : '') + minutes;
  return t('unit.h_min_s', { h: sign + hours, m, s: text });
}

// Seconds as shown, with their unit: minutes and seconds from a minute on, hours, minutes and
// seconds from an hour on.
export function duration(shown, signText) {
  return minutesAndSeconds(shown, signText) || t('unit.s', { n: (signText || '') + shown });
}

// m:ss for clocks, h:mm:ss from an hour on (1:15:00, never 75:00); negative values are shown as
// overrun with a plus sign. Rounded up either side of the deadline, as a time taken is rounded
// away from its target: 1:00 as the incident is reported, 0:01 in its last second (never 0:00
// while there is time), +0:01 as soon as it is past (never 0:00 once late); 0:00 only at the
// deadline itself.
export function countdown(secondsLeft) {
  const over = secondsLeft < 0;
  const total = Math.ceil(Math.round(Math.abs(secondsLeft) * 1000) / 1000);
  const hours = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const minutes = hours ? hours + ':' + (m < 10 ? '0' : '') + m : String(m);
  return (over ? '+' : '') + minutes + ':' + (s < 10 ? '0' : '') + s;
}

// That a notification was begun late (its `held`: the leader's phone was connected to a server
// process that went away, and was given time to reconnect), said short in the page's language
// with until when (its `held_until`, in Beijing time): 先等待队长手机重连至 18:00:10. Held with
// no time known (held before the server recorded it, or a time that does not read): 先等待队长
// 手机重连. Empty when it was not held.
export function heldText(held, heldUntil) {
  const until = typeof heldUntil === 'string' && Number.isFinite(Date.parse(heldUntil));
  if (until) return t('notify.held', { time: clockTime(heldUntil) });
  return held ? t('notify.held_any') : '';
}

export function metres(value) {
  if (value === null || value === undefined) return '';
  if (value >= 1000) return t('unit.km', { n: (value / 1000).toFixed(2) });
  return t('unit.m', { n: Math.round(value) });
}

export function coordinate(value) {
  return Number(value).toFixed(6);
}

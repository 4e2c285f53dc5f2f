import { t } from './i18n.js';

// The server sends ISO 8601 with +08:00 (Asia/Shanghai): show its wall-clock time as sent,
// whatever time zone this device is set to.
export function clockTime(iso) {
  if (!iso) return '';
  const match = /T(\d\d:\d\d:\d\d)/.exec(iso);
  return match ? match[1] : iso;
}

export function ms(iso) {
  return iso ? Date.parse(iso) : NaN;
}

export function seconds(value) {
  const abs = Math.abs(value);
  const text = abs < 10 ? abs.toFixed(1) : String(Math.round(abs));
  return t('unit.s', { n: (value < 0 ? '-' : '') + text });
}

export function signedSeconds(value) {
  return (value > 0 ? '+' : '') + seconds(value);
}

// mm:ss for clocks; negative values are shown as overrun with a plus sign.
export function countdown(secondsLeft) {
  const over = secondsLeft < 0;
  const total = Math.floor(Math.abs(secondsLeft));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return (over ? '+' : '') + m + ':' + (s < 10 ? '0' : '') + s;
}

export function metres(value) {
  if (value === null || value === undefined) return '';
  if (value >= 1000) return t('unit.km', { n: (value / 1000).toFixed(2) });
  return t('unit.m', { n: Math.round(value) });
}

export function coordinate(value) {
  return Number(value).toFixed(6);
}

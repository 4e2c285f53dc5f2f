// Pieces both pages show: the three tier clocks and the hops of a dispatch.
import { h } from './dom.js';
import { t } from './i18n.js';
import {
  clockTime,
  countdown,
  duration,
  metres,
  micros,
  ms,
  offsetSeconds,
  secondsTaken,
  signedSeconds,
} from './format.js';

export const HOPS = ['alerted', 'delivered', 'shown', 'accepted', 'arrived'];

// `options.lateBy` (the console): a late tier also says how long it has been late, counted from
// its deadline on the server's clock by tickClocks, and frozen once its team has arrived (a
// closed incident leaves the console's list).
// `options.mine` (the phone): the tier of the leader's own team, marked 本队 so that another
// tier's breach beside it is plainly not his.
export function tierView(tier, options) {
  const status = tier.status;
  const lateBy = !!(options && options.lateBy);
  const mine = !!(options && options.mine);
  const parts = [
    h('span', { class: 'tier-name', text: t('tier.' + tier.tier) }),
    mine ? h('span', { class: 'tier-mine', text: t('tier.mine') }) : null,
    h('span', { class: 'tier-target', text: targetText(tier.target_s) }),
  ];
  if (status === 'pending') {
    parts.push(
      h('span', {
        class: 'tier-clock',
        role: 'timer',
        dataset: { deadline: tier.deadline, target: String(tier.target_s) },
      }),
    );
  } else if (status === 'met') {
    parts.push(h('span', { class: 'tier-state', text: metText(tier) }));
  } else if (status === 'breached') {
    const text = tier.arrived_at
      ? t('tier.breached_late', { t: takenText(tier, false) })
      : t('tier.breached') + ' ' + clockTime(tier.breached_at || tier.deadline);
    parts.push(h('span', { class: 'tier-state', text }));
    if (lateBy) parts.push(lateView(tier));
  } else {
    parts.push(h('span', { class: 'tier-state', text: t('tier.' + status) }));
  }
  if (!tier.covered) parts.push(h('span', { class: 'tier-uncovered', text: t('tier.uncovered') }));
  return h(
    'div',
    {
      class: 'tier tier-' + status + (tier.covered ? '' : ' tier-nocover'),
      dataset: { tier: String(tier.tier), status, covered: String(tier.covered) },
    },
    parts,
  );
}

// Not a live region (no role timer): a screen reader reads it with the card, never each second.
function lateView(tier) {
  if (tier.arrived_at) {
    const seconds = (micros(tier.arrived_at) - micros(tier.deadline)) / 1e6;
    const text = t('tier.late_arrived', { d: lateFigure(seconds) });
    return h('span', { class: 'tier-late tier-late-final', text });
  }
  return h('span', { class: 'tier-late', dataset: { lateFrom: tier.deadline } });
}

// How long late, as the clock past its deadline reads it (rounded up, 0:01 at the least).
function lateFigure(seconds) {
  return countdown(Math.min(-seconds, -0.001)).slice(1);
}

function metText(tier) {
  return t('tier.met', { t: takenText(tier, true) });
}

// When the tier's first team arrived and how long that took: rounded down when met (59.6 s
// reads 59 秒, never 1 分 00 秒 as if on the minute), up when late (60.4 s reads 1 分 01 秒).
function takenText(tier, met) {
  return t('tier.taken', { time: clockTime(tier.arrived_at), d: secondsTaken(tier.elapsed_s, met) });
}

// The targets are set in seconds (DISPATCH_CHAIN_TARGETS): whole minutes read as the plan
// says them (1分钟到场), any other as minutes and seconds (1 分 30 秒到场, 45 秒到场), never as a
// fraction of a minute (1.5分钟到场, 0.75分钟到场).
function targetText(targetS) {
  if (targetS >= 60 && targetS % 60 === 0) return t('tier.target', { m: targetS / 60 });
  return t('tier.target_d', { d: duration(String(targetS)) });
}

// Called a few times a second: only the clocks' text changes, nothing is rebuilt.
// The page's idea of the server's clock is off by up to half its best round trip (live.js), either
// way, so a clock is held at its tier's whole target: 1:00 as a one-minute incident comes up,
// never 1:01.
export function tickClocks(root, serverNowMs) {
  for (const el of root.querySelectorAll('.tier-clock[data-deadline]')) {
    const target = parseFloat(el.dataset.target) || 60;
    const left = Math.min(target, (ms(el.dataset.deadline) - serverNowMs) / 1000);
    const text = countdown(left);
    if (el.textContent !== text) el.textContent = text;
    el.classList.toggle('clock-warning', left >= 0 && left < target * 0.25);
    el.classList.toggle('clock-over', left < 0);
  }
  for (const el of root.querySelectorAll('.tier-late[data-late-from]')) {
    const text = t('tier.late', { d: lateFigure((serverNowMs - ms(el.dataset.lateFrom)) / 1000) });
    if (el.textContent !== text) el.textContent = text;
  }
}

// `deadline`: the deadline of the dispatch's tier. An arrival by then is in time, and its latency
// is rounded down as its tier's time is: the two may measure the same interval (an arrival
// recorded by radio, counted from the alert), and must read alike.
export function hopsView(d, deadline) {
  const items = [];
  const observed = []; // the times of the hops observed so far, in ms
  for (const hop of HOPS) {
    const at = d[hop + '_at'];
    // A hop the leader's arrival stood for (no accept tapped, no ack before it) was never
    // observed: it says so instead of a time, and no latency is measured to or from it.
    const implied = !!at && !!d[hop + '_implied'];
    const children = [h('span', { class: 'hop-name', text: t('hop.' + hop) })];
    if (implied) {
      children.push(h('span', { class: 'hop-implied-note', text: t('hop.implied') }));
    } else if (at) {
      children.push(h('time', { datetime: at, text: clockTime(at) }));
      // From the latest hop observed by then: an ack that came only after an arrival recorded
      // by radio is measured from the alert, and the arrival not from that later ack.
      const before = observed.filter((when) => when <= ms(at));
      if (before.length) {
        const latency = (ms(at) - Math.max.apply(null, before)) / 1000;
        const inTime = hop === 'arrived' && !!deadline && micros(at) <= micros(deadline);
        children.push(h('span', { class: 'hop-latency', text: signedSeconds(latency, inTime) }));
      }
      observed.push(ms(at));
    }
    const state = implied ? ' hop-implied' : at ? ' hop-done' : '';
    const dataset = implied ? { hop, implied: 'true' } : { hop };
    items.push(h('li', { class: 'hop' + state, dataset }, children));
  }
  return h('ol', { class: 'hops' }, items);
}

// The operator's note of a team added by hand (加派), what its leader was told (调度员附言), as
// the console's card and the incident's record say it: text, never markup, its line breaks
// kept. None for any other dispatch, nor for a 加派 without one.
export function operatorNoteView(d) {
  if (d.added_by !== 'operator' || !d.note) return null;
  return h(
    'p',
    { class: 'operator-note' },
    h('span', { class: 'operator-note-label', text: t('dispatch.operator_note') }),
    h('span', { class: 'operator-note-text', text: d.note }),
  );
}

export function arrivalView(d) {
  if (!d.arrived_at) return null;
  const parts = [t('arrival.source', { source: t('source.' + d.arrival_source) })];
  if (d.arrival_distance_m !== null && d.arrival_distance_m !== undefined) {
    parts.push(t('arrival.distance', { d: metres(d.arrival_distance_m) }));
  }
  const skew = d.arrival_clock_skew_s;
  let skewed = false;
  if (skew !== null && skew !== undefined) {
    skewed = Math.abs(skew) >= 2;
    parts.push(t(skewed ? 'arrival.skew' : 'arrival.skew_ok', { s: offsetSeconds(skew) }));
  }
  return h('p', {
    class: 'arrival' + (skewed ? ' arrival-skewed' : ''),
    dataset: { source: d.arrival_source || '' },
    text: parts.join(' · '),
  });
}

export function langButton(onSwitch) {
  return h('button', { type: 'button', class: 'lang', text: t('lang.switch'), onClick: onSwitch });
}

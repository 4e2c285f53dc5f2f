// One incident's record, read-only (GET /api/v1/reports/incidents/{id}): its category, place
// and times, each tier's outcome, time to arrival and target, and per team alerted its outcome
// and hops at the server's times. Shown by the report page (an exclusion's id) and by the
// console's history.
import { clear, h } from './dom.js';
import { errorText } from './errors.js';
import { t } from './i18n.js';
import { coordinate, duration, heldText, micros, secondsAgainst } from './format.js';
import { arrivalView, hopsView, operatorNoteView } from './views.js';

// Times come as ISO 8601 with +08:00: the wall-clock time as sent, with its date.
export function localTime(iso) {
  return iso ? iso.slice(0, 19).replace('T', ' ') : '';
}

// A time against its target, rounded away from the side of it the time is not on.
export function againstTarget(value, target) {
  const shown = secondsAgainst(value, target === undefined ? null : target);
  return shown === '—' ? shown : duration(shown);
}

// Where an incident was: its village, or its coordinates named, longitude first.
export function placeText(villageName, lon, lat) {
  if (villageName) return villageName;
  if (lon === null || lon === undefined) return '';
  return t('incident.coords', { lon: coordinate(lon), lat: coordinate(lat) });
}

// A tier's outcome judged from its times, by the rule the record's outcomes come by (the
// server's reports/service.py, _one_outcome): an arrival by the deadline meets it, a later one
// breaches it; with none, a tier cancelled or closed by its deadline is not judged, one whose
// deadline `nowMs` (the server's clock as this page knows it) has not passed is pending (at the
// deadline's very instant too: a team there then still meets it, and the timer breaches a tier
// only beyond it), any other breached. The stored status is what the timer set live, and may lag the deadline or the
// record's times; one it breached is past its deadline on the server's clock, whatever this
// page makes of that clock.
export function tierOutcome(tier, closedAt, nowMs) {
  const deadline = micros(tier.deadline);
  if (tier.arrived_at) return micros(tier.arrived_at) <= deadline ? 'met' : 'breached';
  if (tier.status === 'cancelled') return 'cancelled';
  if (closedAt && micros(closedAt) <= deadline) return 'cancelled';
  if (tier.status === 'breached') return 'breached';
  if (deadline >= nowMs * 1000) return 'pending';
  return 'breached';
}

// The village the report recorded the incident in: its reported event's, null for none;
// undefined where the event did not keep it (a report written before it did).
function reportedVillage(timeline) {
  for (const event of timeline || []) {
    const data = event.data || {};
    if (event.type === 'reported') return 'village_name' in data ? data.village_name : undefined;
  }
  return undefined;
}

// Where the incident is counted now (the village its place lies in by the boundaries of today),
// and, when the boundaries were imported or deleted since and it was reported in another, that
// one too: the record keeps what the report said beside what the reports count now.
function placeFact(record, coords) {
  const now = record.village_name ? record.village_name + ' · ' + coords : coords;
  const then = reportedVillage(record.timeline);
  if (then === undefined || (then || null) === (record.village_name || null)) return now;
  return now + t('rep.record_reported_in', { name: then || t('rep.no_village') });
}

// Each village_changed event said as the move it made: from the village the incident was in
// before (as its report or the change before recorded it) to the one it is counted in from
// then on, and the administrator whose import or deletion of boundaries moved it. Without it
// the record's place changed with nothing said.
function villageMoves(timeline) {
  const moves = new Map();
  let before = reportedVillage(timeline);
  for (const event of timeline || []) {
    if (event.type !== 'village_changed') continue;
    const data = event.data || {};
    const vars = {
      from: before || t('rep.no_village'),
      to: data.village_name || t('rep.no_village'),
      who: event.actor_name || '',
    };
    const key = before === undefined ? 'rep.record_village_to' : 'rep.record_village_moved';
    moves.set(event, t(key, vars));
    before = data.village_name || null;
  }
  return moves;
}

export function recordTitle(record) {
  return t('rep.record') + ' · ' + t('category.' + record.incident.category);
}

function row(cells, dataset) {
  return h('tr', { dataset }, cells);
}

export function recordView(record) {
  const incident = record.incident;
  const coords = t('incident.coords', {
    lon: coordinate(incident.location.lon),
    lat: coordinate(incident.location.lat),
  });
  const facts = [
    t('rep.record_reported', { t: localTime(incident.reported_at) }),
    placeFact(record, coords),
    incident.closed_at
      ? t('rep.record_closed', { t: localTime(incident.closed_at) })
      : t('rep.record_open_now'),
  ];
  const tiers = record.tiers.map((tier) =>
    row(
      [
        h('th', { text: t('tier.short.' + tier.tier) }),
        // A tier no team was alerted for says so beside its outcome, as the exclusions and the
        // console's 历史警情 do: breached, but with nobody to send.
        h('td', {
          text:
            t('rep.outcome.' + tier.outcome) +
            (tier.covered === false ? ' · ' + t('tier.uncovered') : ''),
        }),
        h('td', {
          dataset: { field: 'elapsed', value: tier.elapsed_s === null ? '' : String(tier.elapsed_s) },
          text: againstTarget(tier.elapsed_s, tier.target_s),
        }),
        h('td', { text: againstTarget(tier.target_s, null) }),
      ],
      { tier: String(tier.tier), outcome: tier.outcome },
    ),
  );
  const head = h(
    'tr',
    null,
    ['rep.tier', 'rep.outcome', 'rep.record_time', 'rep.target'].map((k) => h('th', { text: t(k) })),
  );
  const outcomes = {};
  for (const o of record.teams) outcomes[o.dispatch_id] = o;
  const targets = {};
  for (const tier of record.tiers) targets[tier.tier] = tier.target_s;
  const deadlines = {};
  for (const c of incident.chain) deadlines[c.tier] = c.deadline;
  const dispatches = incident.dispatches.map((d) => {
    const o = outcomes[d.id];
    const line = [t('tier.short.' + d.tier)];
    // Alerted by the escalation, not by the report: said as the console's card says it.
    if (d.ring > 0) line.push(t(d.added_by === 'operator' ? 'ring.operator' : 'ring.escalated'));
    // Its team had no enabled leader account: its alert reached nobody (its event says when).
    if (d.nobody_alerted) line.push(t('dispatch.nobody_alerted_short'));
    if (o) {
      line.push(t('rep.outcome.' + o.outcome));
      // Added by hand after its tier's deadline: its outcome and time count from its alert.
      if (o.judged_from_alert) line.push(t('rep.from_alert'));
      if (o.time_to_arrival_s !== null) line.push(againstTarget(o.time_to_arrival_s, targets[d.tier]));
    }
    return h(
      'li',
      { class: 'record-dispatch', dataset: { dispatchId: d.id, teamId: d.team_id } },
      h('strong', { text: d.team_name }),
      ' ',
      h('span', { class: 'meta', text: line.join(' · ') }),
      // Added by hand with a note: what its leader was told, as the console's card says it.
      operatorNoteView(d),
      hopsView(d, deadlines[d.tier]),
      arrivalView(d),
    );
  });
  return h(
    'div',
    { class: 'record-view' },
    h('p', { class: 'record-facts', text: facts.join(' · ') }),
    h('p', { class: 'meta mono', text: incident.id }),
    incident.description ? h('p', { text: incident.description }) : null,
    h('table', { class: 'figures record-tiers' }, h('thead', null, head), h('tbody', null, tiers)),
    ...eventsView(record),
    h('h3', { text: t('rep.record_teams') }),
    dispatches.length
      ? h('ul', { class: 'record-dispatches' }, dispatches)
      : h('p', { class: 'hint', text: t('rep.record_no_teams') }),
  );
}

// The escalation reasons the server writes (dispatch/incidents/service.py NO_TIER1, ON_DUTY,
// escalate_if_unaccepted), said in the page's language; another is shown as written.
const NO_TIER1 = 'no tier-1 zone covers the incident';
const ON_DUTY = 'a covering tier-1 team came on duty';
const NO_ACCEPT = /^no tier-1 team accepted within (\S+) s$/;

function escalationText(data, names) {
  const teams = (data.team_ids || []).map((id) => names[id] || id);
  const vars = {
    ring: Math.round(data.ring_m),
    n: teams.length,
    teams: teams.join(t('list.sep')),
  };
  if (data.reason === ON_DUTY) {
    return t(teams.length ? 'rep.record_on_duty' : 'rep.record_on_duty_none', vars);
  }
  const waited = NO_ACCEPT.exec(data.reason || '');
  vars.why =
    data.reason === NO_TIER1
      ? t('rep.record_why_uncovered')
      : waited
        ? t('rep.record_why_no_accept', { s: waited[1] })
        : data.reason || '';
  return t(teams.length ? 'rep.record_escalated' : 'rep.record_escalated_none', vars);
}

// A leader whose phone did not acknowledge the alert, reached over SMS, a webhook or a group
// robot, or not: 三中驻点队 张三未确认接收，短信发送失败（尝试 5 次）.
function noticeText(event, teams) {
  const data = event.data || {};
  const vars = {
    team: teams[data.dispatch_id] || '',
    leader: event.leader_name || '',
    channel: t('notify.channel.' + data.channel),
    n: data.attempts || 0,
  };
  const text = noticeStatusText(event, vars);
  const held = heldText(data.held, data.held_until);
  return held ? t('notify.with_held', { text, held }) : text;
}

function noticeStatusText(event, vars) {
  if (event.type === 'notified') return t('rep.record_notified', vars);
  if (!(event.data || {}).attempts) return t('rep.record_notify_no_phone', vars);
  return t('rep.record_notify_failed', vars);
}

// What happened to the chain after the report, in the order of the server's times: each
// escalation (when, why, how wide, the teams it added or that it found none), each team an
// operator added by hand (who, which, the note), each team whose alert reached nobody (no
// enabled leader account), each tier's breach, each leader the server reached out to over
// another channel when his phone did not acknowledge the alert, and the close, with who closed
// it. The hops are the teams' own, below.
function eventsView(record) {
  const names = {};
  const teams = {}; // by dispatch id
  for (const d of record.incident.dispatches) {
    names[d.team_id] = d.team_name;
    teams[d.id] = d.team_name;
  }
  const items = [];
  const moves = villageMoves(record.timeline);
  for (const event of record.timeline || []) {
    const data = event.data || {};
    let text = moves.get(event) || null;
    if (event.type === 'escalated') text = escalationText(data, names);
    else if (event.type === 'breached') {
      text = t('rep.record_breached', { tier: t('tier.short.' + data.tier) });
    } else if (event.type === 'team_added') {
      // 人工加派: who added which team, at its tier, and why when he said.
      const vars = {
        who: event.actor_name || '',
        team: data.team_name || names[data.team_id] || data.team_id || '',
        tier: t('tier.short.' + data.tier),
        note: data.note || '',
      };
      text = t(data.note ? 'rep.record_added_note' : 'rep.record_added', vars);
    } else if (event.type === 'nobody_alerted') {
      // A team dispatched with no enabled leader account: its alert reached nobody.
      const vars = {
        team: data.team_name || names[data.team_id] || data.team_id || '',
        tier: t('tier.short.' + data.tier),
      };
      text = t('rep.record_nobody_alerted', vars);
    } else if (event.type === 'closed') {
      text = t('rep.record_closed_by', { who: event.actor_name || '' });
    } else if (event.type === 'notified' || event.type === 'notify_failed') {
      text = noticeText(event, teams);
    }
    if (text === null) continue;
    items.push(
      h(
        'li',
        { dataset: { type: event.type } },
        h('time', { datetime: event.at, text: localTime(event.at) }),
        ' ' + text,
      ),
    );
  }
  if (!items.length) return [];
  return [h('h3', { text: t('rep.record_events') }), h('ol', { class: 'record-events' }, items)];
}

/**
 * The box a page shows one incident's record in (its `box`, with `title` and `body` inside),
 * as the report page and the console's history both do: open(id) reads it and shows it, close()
 * hides it and forgets it, render() draws it again in the language of the moment, refresh(id)
 * reads it again in place when the incident shown has changed (an arrival, a close). A record that
 * could not be read says so, and why, as an alert a screen reader announces, with a button to
 * read it again: the box is not left saying it is loading, nor blank.
 */
export function recordBox(api, box, title, body) {
  let shown = null; // {id, record, error} of the record asked for last
  function render() {
    if (!shown || box.hidden) return;
    if (shown.record) {
      box.dataset.state = 'ready';
      title.textContent = recordTitle(shown.record);
      clear(body).appendChild(recordView(shown.record));
      return;
    }
    title.textContent = t('rep.record');
    if (!shown.error) {
      box.dataset.state = 'loading';
      clear(body).appendChild(h('p', { class: 'hint', text: t('rep.record_loading') }));
      return;
    }
    box.dataset.state = 'failed';
    const id = shown.id;
    clear(body).appendChild(
      h(
        'div',
        { class: 'record-failed' },
        h('p', {
          class: 'error',
          role: 'alert',
          text: t('rep.record_failed', { reason: errorText(shown.error) }),
        }),
        h('button', {
          type: 'button',
          dataset: { control: 'retry' },
          text: t('rep.record_retry'),
          onClick: () => open(id),
        }),
      ),
    );
  }
  async function open(id) {
    const asked = (shown = { id, record: null, error: null });
    box.hidden = false;
    box.dataset.incidentId = id;
    render();
    box.scrollIntoView({ block: 'start' });
    try {
      asked.record = await api.get('/api/v1/reports/incidents/' + encodeURIComponent(id));
    } catch (error) {
      asked.error = error;
    }
    // Another record asked for meanwhile, or the box closed: this answer is not shown.
    if (shown === asked) render();
  }
  // Read again where it is: neither "loading" meanwhile nor scrolled to, and a read that fails
  // leaves the record shown as it was. Changes that come while a read is on its way are read
  // once more after it, all together.
  let reading = null; // the record being read again, and whether it changed again meanwhile
  async function refresh(id) {
    if (!shown || shown.id !== id || !shown.record) return;
    if (reading && reading.shown === shown) {
      reading.again = true;
      return;
    }
    const current = (reading = { shown, again: false });
    try {
      const record = await api.get('/api/v1/reports/incidents/' + encodeURIComponent(id));
      if (shown === current.shown) {
        shown.record = record;
        render();
      }
    } catch (_) {
      // The record shown stays; the next change reads it again.
    } finally {
      if (reading === current) reading = null;
    }
    if (current.again) refresh(id);
  }
  function close() {
    shown = null;
    box.hidden = true;
    delete box.dataset.incidentId;
    delete box.dataset.state;
    title.textContent = '';
    clear(body);
  }
  return { open, close, render, refresh };
}

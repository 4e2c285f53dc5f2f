// The team leader's page: alerts full-screen, accept, arrive, position while on the way.
import 'leaflet/dist/leaflet.css';
import '../shared/base.css';
import './phone.css';

import { Api, ApiError, RETRY_TRIES, keepLoading, openIncidents } from '../shared/api.js';
import { signInGate } from '../shared/login.js';
import { errorText } from '../shared/errors.js';
import { Live } from '../shared/live.js';
import { $, clear, h, readConfig } from '../shared/dom.js';
import { applyLang, currentLang, onLangChange, setLang, t } from '../shared/i18n.js';
import { clockTime, coordinate, duration, metres, ms, shanghaiToday } from '../shared/format.js';
import { chime, repeat, soundReady, unlockNow, unlockOnGesture, vibrate } from '../shared/alarm.js';
import { announce } from '../shared/announce.js';
import { L, createMap, incidentMarker, translateMap, zoneLayer } from '../shared/map.js';
import { arrivalView, tickClocks, tierView } from '../shared/views.js';
import { mergeIncident } from '../shared/merge.js';
import { loadShared, remove, save } from '../shared/storage.js';

// How often a position goes to the server while on the way; the server decides arrival.
const POSITION_EVERY_MS = 4000;
// A fix older than this is not sent as where the team is now.
const FIX_FRESH_MS = 15000;
// The coarsest fix the server takes (accuracy_m, metres: dispatch/incidents/schemas.py). A
// coarser one (GPS off, indoors: a cell tower's or an IP's guess) says nothing of where the team
// is, and is not sent: an arrival goes without it, positions are not sent.
const COARSEST_FIX_M = 100000;
// An alert sounds and vibrates until it is accepted or hidden, at most this long.
const RING_FOR_MS = 60000;
// A tap kept on the phone because it did not reach the server is sent again this often (and at
// once when the line comes back).
const OUTBOX_EVERY_MS = 5000;
// On the way, the distance to the scene is said (screen readers) again once it has changed by a
// step from the one said last, and no sooner than this after it: the line on screen follows
// every reply, a fix wandering by a few metres is not news, nor is every 20 m of a run.
const SAY_DISTANCE_EVERY_MS = 10000;
// Right after a tap, a try that failed for the network or a busy server (503) is made again after
// the seconds it asks (at most this many), as the console's reports are.
const LONGEST_RETRY_WAIT_S = 5;
// When the next alert takes the screen, its buttons ignore taps this long: the second tap of a
// double tap must not answer an alert nobody has read.
const SWITCH_GUARD_MS = 600;

const config = readConfig();
const api = new Api('dispatch.m.token', { timeoutS: config.request_timeout_s });

// What the page holds for the leader signed in. Each login starts from it afresh, as a page
// just opened does: a phone handed over at the change of shift must ring for the next leader's
// alerts, the ones the last leader put away (收起) or had up already included.
function signedIn() {
  return {
    me: null,
    team: null,
    incidents: new Map(),
    shownSent: new Set(),
    missed: new Set(),
    positions: new Map(), // dispatch id -> {distance_m, accuracy_m}
    status: null,
    missedWaiting: [], // ids of the missed alerts said to wait for an answer
    closed: new Set(),
    closedShown: null, // the last copy of the incident on screen when it was closed
    queued: new Set(), // alerts put up for an answer: live ones, and missed ones once caught up
    dismissed: new Set(), // put away unanswered (收起): not put up again by themselves
    replaying: false, // missed messages are coming in on this connection
    reloading: null, // after a resync, while the list comes: ids the websocket brought meanwhile
    reloader: null, // asks for the list after a resync until it comes (keepLoading)
    outbox: [], // taps (accept, arrive) the server has not recorded yet, kept on the phone
    outboxNotes: new Map(), // incident id -> why a kept tap was dropped (a function giving the text)
    loading: null, // the first load of the team and its incidents, asked again until it comes
    loadProblem: null, // {error, tries} while it has not
  };
}

const state = Object.assign(
  {
    live: null,
    overlay: null, // incident id on screen
    stopRing: null,
    fix: null,
    fixError: null,
    watchId: null,
    positionTimer: null,
    mapView: null,
    mapFor: null,
    meMarker: null,
    returnFocus: null,
    renderQueued: false,
    reloads: 0, // reloads begun: a later resync's reload takes over from one still retrying
    sending: new Set(),
    trying: new Map(), // tap (dispatch id/action) -> its try at the server on its way
    guardTimer: null,
    day: null, // the server's date the list was drawn on: dates show on other days' times
    said: { id: null, kind: null, distance: null, at: 0 }, // the position line, as last said
  },
  signedIn(),
);

function boot() {
  applyLang();
  const switchLang = () => setLang(currentLang() === 'zh' ? 'en' : 'zh');
  $('#lang').addEventListener('click', switchLang);
  $('#alert-lang').addEventListener('click', switchLang);
  $('#sound').addEventListener('click', enableSound);
  $('#accept').addEventListener('click', onAccept);
  $('#arrive').addEventListener('click', onArrive);
  $('#alert-hide').addEventListener('click', hideAlert);
  $('#alert-next').addEventListener('click', showNext);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && state.overlay) hideAlert();
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      reportShown();
      if (state.overlay) document.title = t('app.phone');
    }
  });
  onLangChange(() => {
    renderAll();
    // The small map stays as it was drawn (the same incident): its controls are retitled.
    if (state.mapView) translateMap(state.mapView);
    showTeam();
    showSound();
    showMissed();
    showOutbox();
    showLoadProblem();
    if (state.status) showStatus(state.status[0], state.status[1]);
    if (state.overlay && document.visibilityState !== 'visible') {
      document.title = t('phone.title_alert');
    }
  });
  unlockOnGesture(showSound);
  signOut = signInGate(api, {
    admit: (me) =>
      me.role !== 'leader' || !me.team_id
        ? () => t('login.wrong_role', { role: t('role.' + me.role) }) + ' — ' + t('phone.not_leader')
        : null,
    enter: start,
    leave: stop,
    // The login tap is a gesture: use it to unlock sound as well.
    onSubmit: () => unlockNow().then(showSound),
  });
  setInterval(tick, 250);
  window.addEventListener('online', flushOutbox);
  window.addEventListener('storage', onOutboxStored);
  setInterval(flushOutbox, OUTBOX_EVERY_MS);
}

// Signs out and shows the login, saying `message` (a function giving the text) under the form;
// set once the page has booted.
let signOut = () => {};

function stop() {
  if (state.loading) state.loading.stop();
  if (state.reloader) state.reloader.stop();
  // A reload still waiting for its list is left behind (reloadList).
  state.reloads += 1;
  if (state.live) state.live.stop();
  state.live = null;
  stopPositions();
  closeOverlay();
  state.returnFocus = null;
  Object.assign(state, signedIn());
  $('#team').textContent = '';
  showLoadProblem();
  renderAll();
}

// An answer's handler for the login that sent the request: an answer that comes after its
// leader signed out is not the next one's.
function forThisLogin(handle) {
  const me = state.me;
  return (value) => {
    if (state.me === me) handle(value);
  };
}

async function start(me) {
  state.me = me;
  state.outbox = loadOutbox();
  showSound();
  // The team and its open incidents come over HTTP; the websocket replays only what came after
  // the last message this phone saw. Refused or out of reach (a server restarting or busy as
  // the page opens), they are asked for again until they come, and the page says so meanwhile.
  state.loading = keepLoading(() => loadTeamAndIncidents(me), showLoading);
  // After a resync: the open incidents, asked for again until they come, as at the start.
  state.reloader = keepLoading(() => reloadList(state.reloads), showLoading);
  await state.loading.run();
  if (state.me !== me) return; // signed out meanwhile
  renderAll();
  flushOutbox();
  state.live = new Live({
    userId: me.id,
    token: () => api.token,
    pingS: config.live_ping_s,
    timeoutS: config.live_timeout_s,
    onWelcome: (_, info) => {
      // Alerts replayed before a line that dropped mid-replay are kept as missed: the seq is
      // past them, they come no more, and they ring once this replay is through.
      state.replaying = true;
      // The server answers again: what the page could not load is asked for now.
      if (state.loadProblem) state.loading.run();
    },
    onResync: reload,
    onMessage,
    onCaughtUp,
    onStatus: showStatus,
    onAuthFailed: () => {
      api.forget();
      signOut(() => t('login.expired'));
    },
  });
  state.live.start();
}

async function loadTeamAndIncidents(me) {
  const team = await api.get('/api/v1/teams/' + me.team_id);
  if (state.me !== me) return;
  state.team = team;
  showTeam();
  const open = await openIncidents(api);
  if (state.me !== me) return;
  // What the websocket brought meanwhile is kept where it is further on; none closed returns.
  state.incidents = new Map(
    open
      .filter((incident) => !state.closed.has(incident.id))
      .map((incident) => [incident.id, mergeIncident(state.incidents.get(incident.id), incident)]),
  );
  const unseen = Array.from(state.incidents.values()).filter(
    (incident) =>
      neverShown(incident) && !alertedHere(incident.id) && !state.dismissed.has(incident.id),
  );
  for (const incident of unseen) state.missed.add(incident.id);
  // The list came after the websocket caught up (it was out of reach at first): ring now.
  if (unseen.length && state.live && state.live.caughtUp) onCaughtUp();
  else if (state.live) scheduleRender();
}

// An alert this phone took but never put on screen counts as missed when the page starts: the
// page was closed or killed between the two (swiped away, the browser reclaiming its tab), and
// its seq, kept on the device, is past the alert, so the websocket does not replay it. The
// server's record says no device of the team has shown it; one that did is left in the list.
function neverShown(incident) {
  const d = myDispatch(incident);
  return unanswered(incident) && alertedMe(incident) && !d.shown_at && !kept(d.id);
}

function showLoading(error, tries) {
  state.loadProblem = error ? { error, tries } : null;
  showLoadProblem();
}

function showLoadProblem() {
  const line = $('#load-problem');
  const problem = state.loadProblem;
  line.hidden = !problem;
  line.textContent = problem
    ? t('load.retrying_phone', { detail: errorText(problem.error), n: problem.tries })
    : '';
}

// After a resync (the gap was past the server's retention) the list comes over HTTP, and an
// alert still unanswered that went to this leader counts as missed: not one of a team whose
// units take turns sent to the unit on turn while he is off it (the server says which, in
// `alerted_you`), nor one this phone has put up already. The alerts the resync skipped come
// again meanwhile or after, as copies: those ring with the missed ones, once (onMessage). A
// later resync's reload takes over from one still waiting for its list.
function reload() {
  state.reloads += 1;
  state.reloading = new Set();
  state.reloader.stop();
  return state.reloader.run();
}

// One try at the list for reload number `reloadNo`; a list that comes after a later reload
// began is left to that one.
async function reloadList(reloadNo) {
  const open = await openIncidents(api);
  if (reloadNo !== state.reloads) return;
  const during = state.reloading || new Set();
  const held = state.incidents;
  // Merged with what the websocket brought meanwhile; what it brought of incidents the list
  // missed (reported after it was read) is kept, what closed stays closed.
  state.incidents = new Map(
    open
      .filter((incident) => !state.closed.has(incident.id))
      .map((incident) => [incident.id, mergeIncident(held.get(incident.id), incident)]),
  );
  for (const id of during) {
    if (!state.incidents.has(id) && held.has(id)) state.incidents.set(id, held.get(id));
  }
  for (const incident of open) {
    if (unanswered(incident) && alertedMe(incident) && !state.queued.has(incident.id)) {
      state.missed.add(incident.id);
    }
  }
  state.reloading = null;
  renderAll();
  onCaughtUp();
}

// Whether this incident's alert went to this leader, as his own view over HTTP says (a server
// that does not say: as it went to the whole team).
function alertedMe(incident) {
  const d = myDispatch(incident);
  return !!d && d.alerted_you !== false;
}

function showTeam() {
  if (state.team && state.me) {
    $('#team').textContent = state.team.name + ' · ' + t('kind.' + state.team.kind) + ' · ' + state.me.name;
  }
}

function showSound() {
  const ready = soundReady();
  const button = $('#sound');
  button.textContent = ready ? t('phone.sound_ready') : t('phone.sound_on');
  button.dataset.ready = String(ready);
}

function enableSound() {
  unlockNow().then(() => {
    showSound();
    chime();
    vibrate(200);
  });
}

function showStatus(status, attempt) {
  // A replay cut short ends with its connection; the next one replays again from there.
  if (status !== 'live') state.replaying = false;
  // Back on line: what the leader tapped meanwhile goes now.
  else if (!state.status || state.status[0] !== 'live') flushOutbox();
  state.status = [status, attempt];
  const el = $('#conn');
  el.hidden = false;
  el.dataset.state = status;
  el.textContent = status === 'reconnecting' ? t('conn.reconnecting', { n: attempt }) : t('conn.' + status);
}

// ---------------------------------------------------------------- messages

function myDispatch(incident) {
  if (!incident || !state.me) return null;
  return incident.dispatches.find((d) => d.team_id === state.me.team_id) || null;
}

// Still waiting for this leader: open, this team alerted, neither accepted nor arrived.
function unanswered(incident) {
  const d = myDispatch(incident);
  return !!(incident && incident.status === 'open' && d && !d.accepted_at && !d.arrived_at);
}

// Unanswered, and no answer tapped on this phone is waiting to be sent either.
function awaitsAnswer(incident) {
  const d = myDispatch(incident);
  return unanswered(incident) && !kept(d.id);
}

// The deadline this team is measured against: its own tier's.
function urgency(incident) {
  const d = myDispatch(incident);
  const tier = d && incident.chain.find((c) => c.tier === d.tier);
  return ms((tier && tier.deadline) || incident.reported_at);
}

// The alerts put up that still wait for this leader's answer, most urgent (earliest deadline)
// first; those put away unanswered are left in the list.
function waitingAlerts() {
  return Array.from(state.queued)
    .map((id) => state.incidents.get(id))
    .filter((incident) => awaitsAnswer(incident) && !state.dismissed.has(incident.id))
    .sort((a, b) => urgency(a) - urgency(b));
}

// Whether this phone has had the incident's alert already: missed (it rings once caught up)
// or put up. A copy sent again after a resync (`again`) is no news either to a phone that holds
// the incident: it rang for it before (this leader's other device, or this one before a reload
// of the page), or reloads it after its own resync and rings for it then.
function alertedHere(id, again) {
  return state.missed.has(id) || state.queued.has(id) || (again && state.incidents.has(id));
}

function onMessage(message, info) {
  const data = message.data || {};
  if (message.type === 'alert') {
    const id = data.incident.id;
    const had = alertedHere(id, !!data.again);
    apply(data.incident);
    if (had) return;
    // Replayed, or a copy come while the list is reloaded after a resync (whose missed alerts
    // it is one of): rung with the missed ones. A new alert meanwhile rings at once.
    if (info.replayed || (data.again && state.reloading)) state.missed.add(id);
    else if (awaitsAnswer(state.incidents.get(id))) {
      state.queued.add(id);
      ring();
      putUpNext();
    }
  } else if (message.type === 'incident.updated') {
    apply(data);
  } else if (message.type === 'chain.breached' || message.type === 'escalation') {
    apply(data.incident);
  }
}

// Alerts that came while the phone was away: say how many still wait for this leader (not
// those already accepted or arrived, from another device or by the time the phone is back),
// and put the newest one up. Those missed before and still unanswered stay counted: a later
// reconnect that brought nothing new does not make them any less missed.
function onCaughtUp() {
  state.replaying = false;
  const waiting = Array.from(state.missed)
    .map((id) => state.incidents.get(id))
    .filter(awaitsAnswer);
  state.missed.clear();
  const before = state.missedWaiting.filter((id) => awaitsAnswer(state.incidents.get(id)));
  state.missedWaiting = before.concat(
    waiting.map((incident) => incident.id).filter((id) => before.indexOf(id) < 0),
  );
  for (const incident of waiting) state.queued.add(incident.id);
  renderAll();
  if (waiting.length) {
    ring();
    putUpNext();
  }
}

// The screen holds an alert waiting for an answer while there is one, the most urgent first. A
// new alert does not take the place of one being read: the screen says it is waiting.
function putUpNext() {
  const current = state.overlay && state.incidents.get(state.overlay);
  if (current && awaitsAnswer(current) && !state.dismissed.has(current.id)) {
    renderOverlay();
    return;
  }
  const next = waitingAlerts()[0];
  if (next) openAlert(next.id, true);
}

function showNext() {
  const next = waitingAlerts().find((incident) => incident.id !== state.overlay);
  if (next) openAlert(next.id, true);
}

// Counted again on every change: once answered (here or on another device), one is no longer
// waiting, and the line goes when none is.
function showMissed() {
  const n = state.missedWaiting.filter((id) => awaitsAnswer(state.incidents.get(id))).length;
  const notice = $('#missed');
  notice.hidden = n === 0;
  setText(notice, t('phone.missed', { n }));
}

function apply(snapshot) {
  if (!snapshot || !snapshot.id || state.closed.has(snapshot.id)) return;
  const incident = mergeIncident(state.incidents.get(snapshot.id), snapshot);
  if (state.reloading) state.reloading.add(incident.id);
  if (incident.status === 'open') state.incidents.set(incident.id, incident);
  else {
    state.incidents.delete(incident.id);
    state.closed.add(incident.id);
    if (state.overlay === incident.id) state.closedShown = incident;
  }
  scheduleRender();
}

function scheduleRender() {
  // Mid-replay an incident can look open and on the way that a later message closes: drawn
  // once caught up.
  if (state.renderQueued || state.replaying) return;
  state.renderQueued = true;
  setTimeout(() => {
    state.renderQueued = false;
    renderAll();
  }, 20);
}

function renderAll() {
  renderList();
  showMissed();
  showOutbox();
  renderOverlay();
  syncPositions();
  updateRing();
  tick();
}

// ---------------------------------------------------------------- the list

// Rows are updated in place, keyed by incident: every change that comes in redraws the
// list, and the control the keyboard is on must stay where it is.
function renderList() {
  const list = $('#incidents');
  const active = document.activeElement;
  const hadFocus = list.contains(active);
  const incidents = Array.from(state.incidents.values()).sort(
    (a, b) => ms(b.reported_at) - ms(a.reported_at),
  );
  const rows = new Map();
  for (const row of Array.from(list.children)) {
    const id = row.dataset.incidentId;
    if (id && state.incidents.has(id)) rows.set(id, row);
    else if (!(row.classList.contains('hint') && !incidents.length)) list.removeChild(row);
  }
  if (!incidents.length && !list.firstChild) {
    list.appendChild(h('p', { class: 'hint', text: t('phone.none') }));
  }
  for (const hint of list.querySelectorAll('.hint')) hint.textContent = t('phone.none');
  let cursor = list.firstElementChild;
  for (const incident of incidents) {
    const row = rows.get(incident.id) || listRow(incident.id);
    fillRow(row, incident);
    // Only what is out of place moves: moving a row would take the focus off its button.
    if (row === cursor) cursor = cursor.nextElementSibling;
    else list.insertBefore(row, cursor);
  }
  if (hadFocus && document.activeElement !== active && active.isConnected) {
    active.focus({ preventScroll: true });
  }
}

function listRow(incidentId) {
  return h(
    'article',
    { class: 'incident', dataset: { incidentId } },
    h('h3'),
    h('p', { class: 'meta meta-reported' }),
    h('p', { class: 'meta meta-state' }),
    h('div', { class: 'tiers' }),
    h('button', { type: 'button', class: 'big', onClick: () => openAlert(incidentId, false) }),
  );
}

function fillRow(row, incident) {
  const d = myDispatch(incident);
  const pending = !!d && !d.accepted_at && !d.arrived_at;
  row.classList.toggle('incident-new', pending);
  setText($('h3', row), t('category.' + incident.category));
  setText(
    $('.meta-reported', row),
    t('phone.reported', { t: clockTime(incident.reported_at) }) +
      (d ? ' · ' + t('phone.distance', { d: metres(d.distance_m) }) : ''),
  );
  const shown = $('.meta-state', row);
  shown.hidden = !d;
  setText(shown, d ? dispatchState(d) : '');
  // The clocks tick by themselves; the tiers are drawn again only when they change, or the
  // language, or the day (a time of yesterday takes its date).
  const tiers = $('.tiers', row);
  const drawn = currentLang() + shanghaiToday() + JSON.stringify(incident.chain);
  if (tiers.dataset.drawn !== drawn) {
    clear(tiers);
    for (const tier of incident.chain) tiers.appendChild(tierView(tier, { mine: isMine(tier, d) }));
    tiers.dataset.drawn = drawn;
  }
  setText($('button', row), t('phone.open'));
}

// The list's rows and the status lines (role=status: a screen reader reads what is written into
// them, the same words again included) are written only when their words change: every update
// that comes in draws the page again.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function dispatchState(d) {
  const waiting = kept(d.id);
  if (waiting) return outboxState(waiting);
  if (d.arrived_at) return t('phone.arrived', { t: clockTime(d.arrived_at) });
  if (d.accepted_at) return t('phone.accepted', { t: clockTime(d.accepted_at) });
  return t('phone.new_alert');
}

// ---------------------------------------------------------------- the alert screen

// `fresh`: put up by itself (a new alert, a missed one, the next waiting), not opened from the
// list; it flashes and, with the page in the background, marks the tab's title.
function openAlert(incidentId, fresh) {
  const incident = state.incidents.get(incidentId);
  if (!incident) return;
  if (!state.overlay) state.returnFocus = document.activeElement;
  else if (state.overlay !== incidentId) guardButtons();
  state.overlay = incidentId;
  state.dismissed.delete(incidentId);
  const overlay = $('#alert');
  overlay.hidden = false;
  // A modal: what lies behind it is out of the keyboard's and screen readers' way, the bar
  // too (its own language switch is covered: Tab past the alert's last button landed on it,
  // the focus out of sight).
  for (const behind of [$('body > .bar'), $('#app')]) {
    behind.setAttribute('aria-hidden', 'true');
    behind.inert = true;
  }
  overlay.classList.toggle('alert-new', !!fresh);
  document.body.style.overflow = 'hidden';
  renderOverlay();
  if (fresh && awaitsAnswer(incident) && document.visibilityState !== 'visible') {
    document.title = t('phone.title_alert');
  }
  const accept = $('#accept');
  (accept.disabled ? $('#arrive') : accept).focus();
  reportShown();
}

// Taps on the answer buttons and on 收起 are let through again a moment after another alert
// came up: the second tap of a double tap on 收起 must not put away an alert nobody has read.
function guardButtons() {
  const alert = $('#alert');
  alert.classList.add('alert-guarded');
  clearTimeout(state.guardTimer);
  state.guardTimer = setTimeout(() => alert.classList.remove('alert-guarded'), SWITCH_GUARD_MS);
}

// Chimes and vibrates while some alert put up waits for an answer (at most a minute from the
// latest one).
function ring() {
  stopRing();
  const started = Date.now();
  const stop = repeat(() => {
    if (Date.now() - started > RING_FOR_MS) {
      stopRing();
      return;
    }
    chime();
    vibrate([400, 150, 400, 150, 400]);
  }, 2500);
  state.stopRing = stop;
  $('#alert').dataset.ringing = 'true';
}

function stopRing() {
  if (state.stopRing) {
    state.stopRing();
    vibrate(0);
  }
  state.stopRing = null;
  $('#alert').dataset.ringing = 'false';
}

function updateRing() {
  if (state.stopRing && !waitingAlerts().length) stopRing();
}

// Put away (收起, Escape): an unanswered alert stays in the list and is not put up again by
// itself; the next one waiting comes up instead, if any.
function hideAlert() {
  const incident = state.incidents.get(state.overlay);
  if (incident && awaitsAnswer(incident)) state.dismissed.add(incident.id);
  const next = waitingAlerts().find((other) => other.id !== state.overlay);
  if (next) {
    openAlert(next.id, true);
    return;
  }
  closeOverlay();
  if (state.returnFocus && document.body.contains(state.returnFocus)) state.returnFocus.focus();
}

function closeOverlay() {
  stopRing();
  state.overlay = null;
  $('#alert').hidden = true;
  for (const behind of [$('body > .bar'), $('#app')]) {
    behind.removeAttribute('aria-hidden');
    behind.inert = false;
  }
  document.body.style.overflow = '';
  if (state.mapView) {
    state.mapView.map.remove();
    state.mapView = null;
    state.mapFor = null;
    state.meMarker = null;
  }
}

// The tier of the leader's own team (his dispatch's), marked on the tiers he sees.
function isMine(tier, d) {
  return !!d && tier.tier === d.tier;
}

function renderOverlay() {
  if (!state.overlay) return;
  const incident = state.incidents.get(state.overlay);
  if (!incident) {
    // Closed while on screen: say so briefly instead of vanishing. Nothing more is sent (no
    // position goes for it), and its tiers are as the close left them: the ones it cancelled
    // no longer count down, to read late.
    $('#alert-title').textContent = t('phone.closed');
    $('#accept').disabled = true;
    $('#arrive').disabled = true;
    showPositionText('');
    const last = state.closedShown;
    if (last && last.id === state.overlay) {
      const tiers = clear($('#alert-tiers'));
      for (const tier of last.chain) {
        tiers.appendChild(tierView(tier, { mine: isMine(tier, myDispatch(last)) }));
      }
    }
    showWaiting();
    showOutboxLine(state.overlay);
    updateRing();
    return;
  }
  const d = myDispatch(incident);
  $('#alert-title').textContent = t('phone.new_alert') + ' · ' + t('category.' + incident.category);
  const info = clear($('#alert-info'));
  if (d) info.appendChild(h('p', { class: 'distance', text: t('phone.distance', { d: metres(d.distance_m) }) }));
  // Sent for by the escalation (no tier-1 team accepted in time, or none covers the place, or
  // his came on duty later), or added by hand by the control room (人工加派): the leader is told
  // how long after the report, his tier's minutes being that much shorter for his team.
  if (d && d.ring > 0) {
    const after = Math.round((ms(d.alerted_at) - ms(incident.reported_at)) / 1000);
    const key = d.added_by === 'operator' ? 'phone.added' : 'phone.ring';
    const note = h('p', { class: 'ring-note', text: t(key, { d: duration(String(after)) }) });
    if (d.added_by === 'operator') note.dataset.addedBy = 'operator';
    info.appendChild(note);
  }
  // What the operator said with it (调度员附言: which gate, which floor), what the leader needs
  // on the way: under 人工加派, as the operator wrote it, set as text (never markup).
  if (d && d.added_by === 'operator' && d.note) {
    info.appendChild(
      h(
        'div',
        { class: 'operator-note' },
        h('p', { class: 'operator-note-label', text: t('phone.operator_note') }),
        h('p', { class: 'operator-note-text', text: d.note }),
      ),
    );
  }
  info.appendChild(h('p', { text: t('phone.reported', { t: clockTime(incident.reported_at) }) }));
  info.appendChild(
    h('p', {
      class: 'meta place',
      // Its village first: a leader knows the town by its villages before its coordinates.
      text:
        (incident.village_name ? incident.village_name + ' · ' : '') +
        t('phone.coords', {
          lon: coordinate(incident.location.lon),
          lat: coordinate(incident.location.lat),
        }),
    }),
  );
  if (incident.description) info.appendChild(h('p', { text: incident.description }));
  const accept = $('#accept');
  const arrive = $('#arrive');
  const acceptKept = d && kept(d.id, 'accept');
  const arriveKept = d && kept(d.id, 'arrive');
  accept.disabled = !d || !!d.accepted_at || !!d.arrived_at || !!acceptKept || !!arriveKept;
  if (d && d.accepted_at) accept.textContent = t('phone.accepted', { t: clockTime(d.accepted_at) });
  else accept.textContent = t('phone.accept' + keptState(acceptKept));
  arrive.disabled = !d || !!d.arrived_at || !!arriveKept;
  if (d && d.arrived_at) arrive.textContent = t('phone.arrived', { t: clockTime(d.arrived_at) });
  else arrive.textContent = t('phone.arrive' + keptState(arriveKept));
  showWaiting();
  showOutboxLine(incident.id);
  updateRing();
  const arrival = clear($('#alert-arrival'));
  const shown = d ? arrivalView(d) : null;
  if (shown) arrival.appendChild(shown);
  renderPosition(d);
  const tiers = clear($('#alert-tiers'));
  for (const tier of incident.chain) tiers.appendChild(tierView(tier, { mine: isMine(tier, d) }));
  renderMap(incident);
}

function renderMap(incident) {
  if (state.mapFor === incident.id) {
    showMe();
    return;
  }
  if (state.mapView) state.mapView.map.remove();
  state.meMarker = null;
  const view = createMap($('#alert-map'), config, { small: true });
  state.mapView = view;
  state.mapFor = incident.id;
  if (state.team) zoneLayer(view, state.team).addTo(view.map);
  incidentMarker(view, incident).addTo(view.map);
  view.map.setView(view.toMap(incident.location.lon, incident.location.lat), 16, { animate: false });
  showMe();
}

// Where this phone is, as its last fix put it, beside the incident on the small map.
function showMe() {
  const view = state.mapView;
  const fix = state.fix;
  if (!view || !fix) return;
  const at = view.toMap(fix.lon, fix.lat);
  if (state.meMarker) state.meMarker.setLatLng(at);
  else {
    state.meMarker = L.circleMarker(at, {
      radius: 7,
      color: '#ffffff',
      weight: 3,
      fillColor: '#2563eb',
      fillOpacity: 1,
    }).addTo(view.map);
  }
}

// Shown means on screen, not just received: only while the page is visible.
function reportShown() {
  if (!state.overlay || document.visibilityState !== 'visible') return;
  const d = myDispatch(state.incidents.get(state.overlay));
  if (!d || d.shown_at || state.shownSent.has(d.id)) return;
  state.shownSent.add(d.id);
  api
    .post('/api/v1/dispatches/' + d.id + '/shown', { device_time: new Date().toISOString() })
    .then(
      forThisLogin(apply),
      forThisLogin(() => state.shownSent.delete(d.id)),
    );
}

// The count of other alerts waiting for an answer, with a way to them.
function showWaiting() {
  const n = waitingAlerts().filter((incident) => incident.id !== state.overlay).length;
  $('#alert-waiting').hidden = n === 0;
  setText($('#alert-waiting-text'), t('phone.waiting', { n }));
}

// Accepting twice records the first, an arrival is recorded once: a tap is kept on the phone
// and sent until the server has it, however long the line is down.
async function onAccept() {
  const incident = state.incidents.get(state.overlay);
  const d = myDispatch(incident);
  if (!d) return;
  $('#accept').disabled = true;
  const entry = keep(d, incident, 'accept', { device_time: new Date().toISOString() });
  // Drawn by send() as on its way; said to be unsent only once a try has failed.
  await send(entry, true);
  // Answered: the next alert waiting comes up; without one, on to the arrival.
  if (state.overlay !== incident.id) return;
  const next = waitingAlerts().find((other) => other.id !== incident.id);
  if (next) openAlert(next.id, true);
  else $('#arrive').focus();
}

async function onArrive() {
  const incident = state.incidents.get(state.overlay);
  const d = myDispatch(incident);
  if (!d) return;
  $('#arrive').disabled = true;
  // The phone's clock at the tap, whenever the server gets it.
  const body = { device_time: new Date().toISOString() };
  const fix = await currentFix();
  if (fix && fix.accuracy <= COARSEST_FIX_M) {
    body.location = { lon: fix.lon, lat: fix.lat, crs: 'wgs84' };
    body.accuracy_m = fix.accuracy;
  }
  const entry = keep(d, incident, 'arrive', body);
  await send(entry, true);
}

// ---------------------------------------------------------------- the outbox

function outboxKey() {
  return 'dispatch.outbox.' + state.me.id;
}

function loadOutbox() {
  try {
    const stored = JSON.parse(loadShared(outboxKey()) || '[]');
    return Array.isArray(stored) ? stored : [];
  } catch (_) {
    return [];
  }
}

// The kept taps are the phone's, not a tab's: every tab of the leader's page keeps them in one
// place, and each change is made to what is stored there at that moment. Written from a tab's
// own list, a tap taken in one tab (or kept) wiped out what another tab had kept, and a tap kept
// by a tab closed since was lost.
function changeOutbox(change) {
  const stored = change(loadOutbox());
  if (stored.length) save(outboxKey(), JSON.stringify(stored));
  else remove(outboxKey());
  adoptOutbox(stored);
}

// This tab's list follows what is stored: taps another tab kept are sent from here too (the
// server records each once), and those it got recorded wait no more. This tab's own entries
// stay the objects they are.
function adoptOutbox(stored) {
  state.outbox = stored.map((entry) => state.outbox.find((own) => sameTap(own, entry)) || entry);
}

function sameTap(a, b) {
  return a.dispatch_id === b.dispatch_id && a.action === b.action;
}

// This entry as it is now, in place of the stored one (tried and failed, its fix left off).
function saveEntry(entry) {
  changeOutbox((stored) => stored.map((other) => (sameTap(other, entry) ? entry : other)));
}

function onOutboxStored(event) {
  if (!state.me || event.key !== outboxKey()) return;
  adoptOutbox(loadOutbox());
  renderAll();
}

// The tap on this dispatch (of this action, or any) still waiting to be sent.
function kept(dispatchId, action) {
  return (
    state.outbox.find((entry) => entry.dispatch_id === dispatchId && (!action || entry.action === action)) ||
    null
  );
}

function keep(d, incident, action, body) {
  let entry = kept(d.id, action);
  if (!entry) {
    // When it was tapped, on the server's clock as the page knows it, as every time on the page
    // is: a phone's own clock minutes off said the tap came minutes after it did. The phone's
    // clock goes to the server in the body, as it is.
    const tapped = new Date(state.live ? state.live.serverNow() : Date.now()).toISOString();
    const tap = { dispatch_id: d.id, incident_id: incident.id, action, body, tapped_at: tapped };
    changeOutbox((stored) =>
      stored.some((other) => sameTap(other, tap)) ? stored : stored.concat([tap]),
    );
    // Another tab's, if it kept the same tap first.
    entry = kept(d.id, action);
  }
  state.outboxNotes.delete(incident.id);
  return entry;
}

// A tap on its first way to the server, no try of it failed yet: said to be sending, not to be
// unsent and kept. Once a try fails it is said to wait (and is sent again by itself).
function inFlight(entry) {
  return !entry.failed && state.sending.has(tapKey(entry));
}

// The suffix of a button's text for its kept tap: none, on its way, or waiting to be sent.
function keptState(entry) {
  if (!entry) return '';
  return inFlight(entry) ? '_sending' : '_pending';
}

// A try of this tap failed: from now on the screen says it is kept unsent.
function failedTry(entry) {
  if (entry.failed || !state.outbox.includes(entry)) return;
  entry.failed = true;
  saveEntry(entry);
  renderAll();
}

function drop(entry) {
  state.outbox = state.outbox.filter((other) => other !== entry);
  changeOutbox((stored) => stored.filter((other) => !sameTap(other, entry)));
}

// `retrying`: right after the tap, tried a few times over some seconds, saying so; later
// chances send it once each.
async function send(entry, retrying) {
  const key = tapKey(entry);
  if (state.sending.has(key) || !state.outbox.includes(entry)) return;
  state.sending.add(key);
  if (!entry.failed) renderAll();
  const me = state.me;
  let again = false;
  const retried = (busy, seconds, attempt, tries) => {
    if (state.me === me) failedTry(entry);
    showRetrying(busy, seconds, attempt, tries);
  };
  try {
    const reply = retrying ? await tryTapRetrying(entry, retried) : await tryTap(entry);
    // Signed out meanwhile: the tap stays in its leader's outbox, sent again (and recorded
    // once) at his next login.
    if (state.me !== me) return;
    drop(entry);
    apply(reply);
  } catch (error) {
    if (fixRefused(entry, error)) {
      // The arrival is what counts; the position was an extra. Sent again without it, now.
      withoutFix(entry);
      again = true;
    } else if (refusedForGood(error) && state.me === me) {
      drop(entry);
      state.outboxNotes.set(entry.incident_id, () => refusal(entry, error));
    }
    // Otherwise it stays on the phone for the next chance, said to be unsent.
    else if (state.me === me && state.outbox.includes(entry) && !entry.failed) {
      entry.failed = true;
      saveEntry(entry);
    }
  } finally {
    state.sending.delete(key);
    renderAll();
  }
  if (again) await send(entry, retrying);
}

// One try of a kept tap at the server. An arrival goes after the acceptance tapped before it:
// while that one's try is on its way the arrival waits for its answer, and one kept unsent is
// tried first. Sent side by side, on a slow line or as the line came back, the arrival could
// reach the server first, which then recorded the acceptance as implied by it, at its time, and
// the acceptance's own tap as nothing. Whatever that try's answer, the arrival goes then: the
// tier is judged by it, and it waits for one try of the acceptance at most.
async function tryTap(entry) {
  const accept = entry.action === 'arrive' ? kept(entry.dispatch_id, 'accept') : null;
  if (accept) {
    const onItsWay = state.trying.get(tapKey(accept));
    if (onItsWay) await onItsWay.catch(() => {});
    else {
      const me = state.me;
      await tryTap(accept).then(
        (reply) => {
          if (state.me !== me) return;
          drop(accept);
          apply(reply);
        },
        () => {}, // left to its own tries
      );
    }
  }
  const key = tapKey(entry);
  const path = '/api/v1/dispatches/' + entry.dispatch_id + '/' + entry.action;
  const reply = api.post(path, entry.body);
  state.trying.set(key, reply);
  try {
    return await reply;
  } finally {
    if (state.trying.get(key) === reply) state.trying.delete(key);
  }
}

// Tried a few times over some seconds while the network fails it or the server is busy (503),
// `waiting(busy, seconds, attempt, tries)` told before each wait.
async function tryTapRetrying(entry, waiting) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await tryTap(entry);
    } catch (error) {
      const busy = error instanceof ApiError && error.status === 503;
      if (!(busy || error instanceof TypeError) || attempt >= RETRY_TRIES) throw error;
      const seconds = Math.min(error.retryAfterS || 1, LONGEST_RETRY_WAIT_S);
      waiting(busy, seconds, attempt, RETRY_TRIES);
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    }
  }
}

function tapKey(entry) {
  return entry.dispatch_id + '/' + entry.action;
}

// An arrival the server refused as invalid (422) while it carried a position: the position is
// what it could refuse (a fix coarser than it takes, a kept tap of an older page), never the
// arrival itself.
function fixRefused(entry, error) {
  const body = entry.body || {};
  return (
    error instanceof ApiError &&
    error.status === 422 &&
    entry.action === 'arrive' &&
    (body.location !== undefined || body.accuracy_m !== undefined)
  );
}

function withoutFix(entry) {
  const body = Object.assign({}, entry.body);
  delete body.location;
  delete body.accuracy_m;
  entry.body = body;
  saveEntry(entry);
}

// A 4xx says the server has the answer or never will take it (the incident closed, another
// team's dispatch); not so a 401 (sent after the next login), 408 or 429 (sent later).
function refusedForGood(error) {
  return (
    error instanceof ApiError &&
    error.status >= 400 &&
    error.status < 500 &&
    [401, 408, 429].indexOf(error.status) < 0
  );
}

function refusal(entry, error) {
  const action = t('phone.outbox.' + entry.action);
  if (error.status === 409) return t('phone.outbox_closed', { action });
  return t('phone.outbox_refused', { action, detail: errorText(error) });
}

// Each kept tap in turn, in the order tapped: on reconnect, on the browser's online event and
// every few seconds while any is waiting.
async function flushOutbox() {
  if (!state.me || !state.outbox.length || !api.token) return;
  for (const entry of state.outbox.slice()) await send(entry, false);
}

function outboxState(entry) {
  return t(inFlight(entry) ? 'phone.outbox_sending' : 'phone.outbox_state', {
    action: t('phone.outbox.' + entry.action),
    t: clockTime(entry.tapped_at),
  });
}

// Under the team's name: how many taps wait to be sent, and why any was dropped.
function showOutbox() {
  const notice = $('#outbox');
  const n = state.outbox.filter((entry) => !inFlight(entry)).length;
  const lines = n ? [t('phone.outbox_count', { n })] : [];
  for (const note of state.outboxNotes.values()) lines.push(note());
  notice.hidden = !lines.length;
  setText(notice, lines.join(' '));
}

// On the alert screen: this incident's taps waiting to be sent, or why one was dropped.
function showOutboxLine(incidentId) {
  const line = $('#alert-outbox');
  const waiting = state.outbox.filter((entry) => entry.incident_id === incidentId);
  const note = state.outboxNotes.get(incidentId);
  let text = '';
  if (waiting.length) {
    text = waiting
      .map((entry) =>
        t(inFlight(entry) ? 'phone.outbox_sending' : 'phone.outbox_pending', {
          action: t('phone.outbox.' + entry.action),
          t: clockTime(entry.tapped_at),
        }),
      )
      .join(' ');
  } else if (note) text = note();
  line.hidden = !text;
  line.dataset.state = !waiting.length ? 'dropped' : waiting.every(inFlight) ? 'sending' : 'waiting';
  setText(line, text);
}

// ---------------------------------------------------------------- positions

function geolocation() {
  return navigator.geolocation && typeof navigator.geolocation.getCurrentPosition === 'function'
    ? navigator.geolocation
    : null;
}

function toFix(position) {
  const c = position.coords;
  // Browsers give WGS84. Accuracy 0 is not a real measurement; the server wants a positive one.
  return { lon: c.longitude, lat: c.latitude, accuracy: Math.max(c.accuracy || 0, 1), at: Date.now() };
}

// The freshest fix there is, or a new one within a few seconds, or none (refused, no GPS).
function currentFix() {
  if (state.fix && Date.now() - state.fix.at < 10000) return Promise.resolve(state.fix);
  const geo = geolocation();
  if (!geo) return Promise.resolve(null);
  return new Promise((resolve) => {
    geo.getCurrentPosition(
      (position) => {
        state.fix = toFix(position);
        resolve(state.fix);
      },
      () => resolve(null),
      { enableHighAccuracy: true, timeout: 8000, maximumAge: 10000 },
    );
  });
}

function onTheWay() {
  const result = [];
  for (const incident of state.incidents.values()) {
    const d = myDispatch(incident);
    if (d && d.accepted_at && !d.arrived_at) result.push(d);
  }
  return result;
}

function syncPositions() {
  // Mid-replay an incident can look accepted that a later message closes: decided once caught
  // up, on what is still open then.
  if (state.replaying) return;
  if (onTheWay().length) startPositions();
  else stopPositions();
}

function startPositions() {
  const geo = geolocation();
  if (!geo) {
    state.fixError = 'unavailable';
    return;
  }
  if (state.watchId !== null) return;
  state.watchId = geo.watchPosition(
    (position) => {
      const first = !state.fix;
      state.fix = toFix(position);
      state.fixError = null;
      showMe();
      renderPosition(myDispatch(state.incidents.get(state.overlay)));
      if (first) sendPositions();
    },
    (error) => {
      state.fixError = error.code === 1 ? 'denied' : 'unavailable';
      renderPosition(myDispatch(state.incidents.get(state.overlay)));
    },
    { enableHighAccuracy: true, maximumAge: 5000, timeout: 20000 },
  );
  state.positionTimer = setInterval(sendPositions, POSITION_EVERY_MS);
}

function stopPositions() {
  const geo = geolocation();
  if (geo && state.watchId !== null) geo.clearWatch(state.watchId);
  state.watchId = null;
  clearInterval(state.positionTimer);
  state.positionTimer = null;
}

function sendPositions() {
  const fix = state.fix;
  if (!fix || Date.now() - fix.at > FIX_FRESH_MS || fix.accuracy > COARSEST_FIX_M) return;
  for (const d of onTheWay()) {
    const body = {
      location: { lon: fix.lon, lat: fix.lat, crs: 'wgs84' },
      accuracy_m: fix.accuracy,
      device_time: new Date().toISOString(),
    };
    api.post('/api/v1/dispatches/' + d.id + '/position', body).then(
      forThisLogin((reply) => {
        state.positions.set(d.id, { distance: reply.distance_m, accuracy: fix.accuracy });
        // Only a fix that recorded the arrival comes back with the incident; otherwise only
        // the distance shown changes, and every other change comes over the websocket.
        if (reply.incident) apply(reply.incident);
        else renderPosition(myDispatch(state.incidents.get(state.overlay)));
      }),
      () => {},
    );
  }
}

function renderPosition(d) {
  if (!d || !d.accepted_at || d.arrived_at) {
    showPositionText('');
    if (d && d.arrived_at) sayPosition(d.id, 'arrived', null, arrivedText(d));
    return;
  }
  const last = state.positions.get(d.id);
  const fix = state.fix;
  if (state.fixError === 'denied') {
    showPositionText(t('phone.position_denied'));
    sayPosition(d.id, 'denied', null, t('phone.position_denied'));
  } else if (fix && fix.accuracy > COARSEST_FIX_M) {
    const text = t('phone.position_coarse', { a: metres(fix.accuracy) });
    showPositionText(text);
    sayPosition(d.id, 'coarse', null, text);
  } else if (last) {
    showPositionText(t('phone.position', { d: metres(last.distance), a: metres(last.accuracy) }));
    sayPosition(d.id, 'distance', last.distance, t('phone.position_said', { d: metres(last.distance) }));
  } else {
    showPositionText(t('phone.position_wait'));
    sayPosition(d.id, 'wait', null, '');
  }
}

function showPositionText(text) {
  const line = $('#alert-position');
  if (line.textContent !== text) line.textContent = text;
}

// What the position line says, told to a screen reader only when it matters: what the line is
// about changes (no permission, a fix too rough, the server out of reach, the arrival: each
// once), or the distance has moved a step (distanceStep) from the one said last and some
// seconds have passed. The arrival is said only for a dispatch whose way here was followed:
// not for one opened from the list long after.
function sayPosition(dispatchId, kind, distance, text) {
  const said = state.said;
  if (said.id !== dispatchId) {
    if (kind === 'arrived') return;
    Object.assign(said, { id: dispatchId, kind: null, distance: null, at: 0 });
  }
  if (kind === 'distance' && said.kind === 'distance') {
    const moved = Math.abs(distance - said.distance) >= distanceStep(said.distance);
    if (!moved || Date.now() - said.at < SAY_DISTANCE_EVERY_MS) return;
  } else if (kind === said.kind) return;
  said.kind = kind;
  said.distance = distance;
  said.at = Date.now();
  if (text) announce($('#alert-said'), text);
}

// The change in distance worth saying: 500 m out past a kilometre, 100 m nearer, 50 m close by.
function distanceStep(distance) {
  if (distance >= 1000) return 500;
  return distance >= 200 ? 100 : 50;
}

function arrivedText(d) {
  const parts = [t('phone.arrived', { t: clockTime(d.arrived_at) })];
  if (d.arrival_source) {
    parts.push(t('arrival.source', { source: t('source.' + d.arrival_source) }));
  }
  return parts.join(' · ');
}

function showRetrying(busy, seconds, attempt, tries) {
  const text = t(busy ? 'retry.busy' : 'retry.unreached', { s: seconds, n: attempt, max: tries });
  showPositionText(text);
  const d = myDispatch(state.incidents.get(state.overlay));
  if (d) sayPosition(d.id, 'retry', null, text);
}

function tick() {
  if (!state.live) return;
  // At midnight (the server's, Asia/Shanghai) yesterday's times take their date: draw again.
  const day = shanghaiToday();
  if (state.day !== day) {
    const first = state.day === null;
    state.day = day;
    if (!first) scheduleRender();
  }
  const now = state.live.serverNow();
  tickClocks($('#incidents'), now);
  if (state.overlay) tickClocks($('#alert'), now);
}

boot();

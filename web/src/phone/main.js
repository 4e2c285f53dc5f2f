// The team leader's page: alerts full-screen, accept, arrive, position while on the way.
import 'leaflet/dist/leaflet.css';
import '../shared/base.css';
import './phone.css';

import { Api } from '../shared/api.js';
import { showLoginError, submitLogin } from '../shared/login.js';
import { errorText } from '../shared/errors.js';
import { Live } from '../shared/live.js';
import { $, clear, h, readConfig } from '../shared/dom.js';
import { applyLang, currentLang, onLangChange, setLang, t } from '../shared/i18n.js';
import { clockTime, coordinate, metres, ms } from '../shared/format.js';
import { chime, repeat, soundReady, unlockNow, unlockOnGesture, vibrate } from '../shared/alarm.js';
import { L, createMap, incidentMarker, zoneLayer } from '../shared/map.js';
import { arrivalView, tickClocks, tierView } from '../shared/views.js';
import { mergeIncident } from '../shared/merge.js';

// How often a position goes to the server while on the way; the server decides arrival.
const POSITION_EVERY_MS = 4000;
// A fix older than this is not sent as where the team is now.
const FIX_FRESH_MS = 15000;
// An alert sounds and vibrates until it is accepted or hidden, at most this long.
const RING_FOR_MS = 60000;

const config = readConfig();
const api = new Api('dispatch.m.token');

const state = {
  me: null,
  team: null,
  live: null,
  incidents: new Map(),
  overlay: null, // incident id on screen
  shownSent: new Set(),
  missed: new Set(),
  stopRing: null,
  fix: null,
  fixError: null,
  watchId: null,
  positionTimer: null,
  positions: new Map(), // dispatch id -> {distance_m, accuracy_m}
  mapView: null,
  mapFor: null,
  meMarker: null,
  returnFocus: null,
  renderQueued: false,
  status: null,
  missedWaiting: [], // ids of the missed alerts said to wait for an answer
  closed: new Set(),
};

function boot() {
  applyLang();
  $('#lang').addEventListener('click', () => setLang(currentLang() === 'zh' ? 'en' : 'zh'));
  $('#logout').addEventListener('click', () => {
    api.logout();
    showLogin(null);
  });
  $('#login-form').addEventListener('submit', onLogin);
  $('#sound').addEventListener('click', enableSound);
  $('#accept').addEventListener('click', onAccept);
  $('#arrive').addEventListener('click', onArrive);
  $('#alert-hide').addEventListener('click', hideAlert);
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
    showTeam();
    showSound();
    showMissed();
    if (state.status) showStatus(state.status[0], state.status[1]);
    if (state.overlay && document.visibilityState !== 'visible') {
      document.title = '【' + t('phone.new_alert') + '】';
    }
  });
  unlockOnGesture(showSound);
  api.onUnauthorized = () => showLogin(() => t('login.expired'));
  if (api.token) start();
  else showLogin(null);
  setInterval(tick, 250);
}

// `message`: a function giving what to say under the form (in the language of the moment), or null.
function showLogin(message) {
  if (state.live) state.live.stop();
  state.live = null;
  stopPositions();
  closeOverlay();
  $('#app').hidden = true;
  $('#conn').hidden = true;
  $('#login').hidden = false;
  showLoginError(message);
  $('#login-form').elements.namedItem('username').focus();
}

async function onLogin(event) {
  event.preventDefault();
  if (!(await submitLogin(api, event.target))) return;
  // The login tap is a gesture: use it to unlock sound as well.
  unlockNow().then(showSound);
  start();
}

async function start() {
  let me;
  try {
    me = await api.get('/api/v1/auth/me');
  } catch (_) {
    return;
  }
  if (me.role !== 'leader' || !me.team_id) {
    api.logout();
    showLogin(() => t('login.wrong_role', { role: t('role.' + me.role) }) + ' — ' + t('phone.not_leader'));
    return;
  }
  state.me = me;
  $('#login').hidden = true;
  $('#app').hidden = false;
  showSound();
  try {
    state.team = await api.get('/api/v1/teams/' + me.team_id);
    showTeam();
    const open = await api.get('/api/v1/incidents?status=open');
    state.incidents = new Map(open.map((incident) => [incident.id, incident]));
  } catch (_) {
    // The websocket's replay and later updates fill in what this missed.
  }
  renderAll();
  state.live = new Live({
    userId: me.id,
    token: () => api.token,
    onWelcome: (_, info) => {
      if (info.reconnected) state.missed.clear();
    },
    onResync: reload,
    onMessage,
    onCaughtUp,
    onStatus: showStatus,
    onAuthFailed: () => {
      api.logout();
      showLogin(() => t('login.expired'));
    },
  });
  state.live.start();
}

// After a resync (the gap was past the server's retention) the list comes over HTTP, and any
// alert still unanswered counts as missed.
async function reload() {
  const open = await api.get('/api/v1/incidents?status=open');
  state.incidents = new Map(open.map((incident) => [incident.id, incident]));
  for (const incident of open) {
    if (unanswered(incident)) state.missed.add(incident.id);
  }
  renderAll();
  onCaughtUp();
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

function onMessage(message, info) {
  const data = message.data || {};
  if (message.type === 'alert') {
    apply(data.incident);
    if (info.replayed) state.missed.add(data.incident.id);
    else openAlert(data.incident.id, true);
  } else if (message.type === 'incident.updated') {
    apply(data);
  } else if (message.type === 'chain.breached' || message.type === 'escalation') {
    apply(data.incident);
  }
}

// Alerts that came while the phone was away: say how many still wait for this leader (not
// those already accepted or arrived, from another device or by the time the phone is back),
// and put the newest one up.
function onCaughtUp() {
  const waiting = Array.from(state.missed)
    .map((id) => state.incidents.get(id))
    .filter(unanswered)
    .sort((a, b) => ms(b.reported_at) - ms(a.reported_at));
  state.missed.clear();
  state.missedWaiting = waiting.map((incident) => incident.id);
  showMissed();
  if (waiting.length && !state.overlay) openAlert(waiting[0].id, true);
}

// Counted again on every change: once answered (here or on another device), one is no longer
// waiting, and the line goes when none is.
function showMissed() {
  const n = state.missedWaiting.filter((id) => unanswered(state.incidents.get(id))).length;
  const notice = $('#missed');
  notice.hidden = n === 0;
  notice.textContent = t('phone.missed', { n });
}

function apply(snapshot) {
  if (!snapshot || !snapshot.id || state.closed.has(snapshot.id)) return;
  const incident = mergeIncident(state.incidents.get(snapshot.id), snapshot);
  if (incident.status === 'open') state.incidents.set(incident.id, incident);
  else {
    state.incidents.delete(incident.id);
    state.closed.add(incident.id);
  }
  scheduleRender();
}

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  setTimeout(() => {
    state.renderQueued = false;
    renderAll();
  }, 20);
}

function renderAll() {
  renderList();
  showMissed();
  renderOverlay();
  syncPositions();
  tick();
}

// ---------------------------------------------------------------- the list

function renderList() {
  const list = clear($('#incidents'));
  const incidents = Array.from(state.incidents.values()).sort(
    (a, b) => ms(b.reported_at) - ms(a.reported_at),
  );
  if (!incidents.length) list.appendChild(h('p', { class: 'hint', text: t('phone.none') }));
  for (const incident of incidents) {
    const d = myDispatch(incident);
    const pending = d && !d.accepted_at && !d.arrived_at;
    list.appendChild(
      h(
        'article',
        {
          class: 'incident' + (pending ? ' incident-new' : ''),
          dataset: { incidentId: incident.id },
        },
        h('h3', { text: t('category.' + incident.category) }),
        h('p', {
          class: 'meta',
          text:
            t('phone.reported', { t: clockTime(incident.reported_at) }) +
            (d ? ' · ' + t('phone.distance', { d: metres(d.distance_m) }) : ''),
        }),
        d ? h('p', { class: 'meta', text: dispatchState(d) }) : null,
        h('div', { class: 'tiers' }, incident.chain.map(tierView)),
        h('button', {
          type: 'button',
          class: 'big',
          text: t('phone.open'),
          onClick: () => openAlert(incident.id, false),
        }),
      ),
    );
  }
}

function dispatchState(d) {
  if (d.arrived_at) return t('phone.arrived', { t: clockTime(d.arrived_at) });
  if (d.accepted_at) return t('phone.accepted', { t: clockTime(d.accepted_at) });
  return t('phone.new_alert');
}

// ---------------------------------------------------------------- the alert screen

function openAlert(incidentId, fresh) {
  const incident = state.incidents.get(incidentId);
  if (!incident) return;
  if (!state.overlay) state.returnFocus = document.activeElement;
  state.overlay = incidentId;
  const overlay = $('#alert');
  overlay.hidden = false;
  // A modal: what lies behind it is out of the keyboard's and screen readers' way.
  $('#app').setAttribute('aria-hidden', 'true');
  $('#app').inert = true;
  overlay.classList.toggle('alert-new', !!fresh);
  document.body.style.overflow = 'hidden';
  renderOverlay();
  const d = myDispatch(incident);
  if (fresh && d && !d.accepted_at) {
    ring();
    if (document.visibilityState !== 'visible') document.title = '【' + t('phone.new_alert') + '】';
  }
  const accept = $('#accept');
  (accept.disabled ? $('#arrive') : accept).focus();
  reportShown();
}

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
}

function stopRing() {
  if (state.stopRing) state.stopRing();
  state.stopRing = null;
  vibrate(0);
}

function hideAlert() {
  closeOverlay();
  if (state.returnFocus && document.body.contains(state.returnFocus)) state.returnFocus.focus();
}

function closeOverlay() {
  stopRing();
  state.overlay = null;
  $('#alert').hidden = true;
  $('#app').removeAttribute('aria-hidden');
  $('#app').inert = false;
  document.body.style.overflow = '';
  if (state.mapView) {
    state.mapView.map.remove();
    state.mapView = null;
    state.mapFor = null;
    state.meMarker = null;
  }
}

function renderOverlay() {
  if (!state.overlay) return;
  const incident = state.incidents.get(state.overlay);
  if (!incident) {
    // Closed while on screen: say so briefly instead of vanishing.
    $('#alert-title').textContent = t('phone.closed');
    $('#accept').disabled = true;
    $('#arrive').disabled = true;
    stopRing();
    return;
  }
  const d = myDispatch(incident);
  $('#alert-title').textContent = t('phone.new_alert') + ' · ' + t('category.' + incident.category);
  const info = clear($('#alert-info'));
  if (d) info.appendChild(h('p', { class: 'distance', text: t('phone.distance', { d: metres(d.distance_m) }) }));
  info.appendChild(h('p', { text: t('phone.reported', { t: clockTime(incident.reported_at) }) }));
  info.appendChild(
    h('p', {
      class: 'meta',
      text: t('phone.coords', {
        lat: coordinate(incident.location.lat),
        lon: coordinate(incident.location.lon),
      }),
    }),
  );
  if (incident.description) info.appendChild(h('p', { text: incident.description }));
  const accept = $('#accept');
  const arrive = $('#arrive');
  accept.disabled = !d || !!d.accepted_at || !!d.arrived_at;
  accept.textContent = d && d.accepted_at ? t('phone.accepted', { t: clockTime(d.accepted_at) }) : t('phone.accept');
  arrive.disabled = !d || !!d.arrived_at;
  arrive.textContent = d && d.arrived_at ? t('phone.arrived', { t: clockTime(d.arrived_at) }) : t('phone.arrive');
  if (d && (d.accepted_at || d.arrived_at)) stopRing();
  const arrival = clear($('#alert-arrival'));
  const shown = d ? arrivalView(d) : null;
  if (shown) arrival.appendChild(shown);
  renderPosition(d);
  const tiers = clear($('#alert-tiers'));
  for (const tier of incident.chain) tiers.appendChild(tierView(tier));
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
    .then(apply, () => state.shownSent.delete(d.id));
}

async function onAccept() {
  const d = myDispatch(state.incidents.get(state.overlay));
  if (!d) return;
  stopRing();
  $('#accept').disabled = true;
  try {
    // Accepting twice records the first: safe to send again when the server was busy.
    apply(await api.postRetrying('/api/v1/dispatches/' + d.id + '/accept', undefined, {}, showRetrying));
  } catch (error) {
    showPositionText(t('error.generic', { detail: errorText(error) }));
    $('#accept').disabled = false;
  }
  $('#arrive').focus();
}

async function onArrive() {
  const d = myDispatch(state.incidents.get(state.overlay));
  if (!d) return;
  stopRing();
  $('#arrive').disabled = true;
  const fix = await currentFix();
  const body = { device_time: new Date().toISOString() };
  if (fix) {
    body.location = { lon: fix.lon, lat: fix.lat, crs: 'wgs84' };
    body.accuracy_m = fix.accuracy;
  }
  try {
    // An arrival is recorded once: safe to send again when the server was busy.
    apply(await api.postRetrying('/api/v1/dispatches/' + d.id + '/arrive', body, {}, showRetrying));
  } catch (error) {
    showPositionText(t('error.generic', { detail: errorText(error) }));
    $('#arrive').disabled = false;
  }
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
  if (!fix || Date.now() - fix.at > FIX_FRESH_MS) return;
  for (const d of onTheWay()) {
    const body = {
      location: { lon: fix.lon, lat: fix.lat, crs: 'wgs84' },
      accuracy_m: fix.accuracy,
      device_time: new Date().toISOString(),
    };
    api.post('/api/v1/dispatches/' + d.id + '/position', body).then(
      (reply) => {
        state.positions.set(d.id, { distance: reply.distance_m, accuracy: fix.accuracy });
        apply(reply.incident);
      },
      () => {},
    );
  }
}

function renderPosition(d) {
  if (!d || !d.accepted_at || d.arrived_at) {
    showPositionText('');
    return;
  }
  const last = state.positions.get(d.id);
  if (state.fixError === 'denied') showPositionText(t('phone.position_denied'));
  else if (last) {
    showPositionText(t('phone.position', { d: metres(last.distance), a: metres(last.accuracy) }));
  } else showPositionText(t('phone.position_wait'));
}

function showPositionText(text) {
  $('#alert-position').textContent = text;
}

function showRetrying(busy, seconds, attempt, tries) {
  showPositionText(t(busy ? 'retry.busy' : 'retry.unreached', { s: seconds, n: attempt, max: tries }));
}

function tick() {
  if (!state.live) return;
  const now = state.live.serverNow();
  tickClocks($('#incidents'), now);
  if (state.overlay) tickClocks($('#alert'), now);
}

boot();

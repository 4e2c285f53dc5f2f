// The operator's dispatch console: map with zones, reporting, the live incident list.
import 'leaflet/dist/leaflet.css';
import '../shared/base.css';
import './console.css';

import { Api, keepLoading, openIncidents } from '../shared/api.js';
import { officeRefusal, signInGate } from '../shared/login.js';
import { Live } from '../shared/live.js';
import { $, clear, h, newKey, readConfig } from '../shared/dom.js';
import { load, loadForTab, removeForTab, save, saveForTab } from '../shared/storage.js';
import { applyLang, currentLang, onLangChange, setLang, t } from '../shared/i18n.js';
import {
  clockTime,
  coordinate,
  heldText,
  metres,
  micros,
  ms,
  shanghaiToday,
} from '../shared/format.js';
import { errorText } from '../shared/errors.js';
import { looksSwapped, readLink, readOne, readPair } from './coordinates.js';
import { Geodesic } from 'geographiclib-geodesic';
import { repeat, siren, soundReady, unlockOnGesture } from '../shared/alarm.js';
import { announce } from '../shared/announce.js';
import {
  L,
  ZONE_STYLE,
  createMap,
  draftMarker,
  fitAll,
  incidentMarker,
  translateMap,
  zoneLayer,
  zoneParts,
} from '../shared/map.js';
import {
  arrivalView,
  hopsView,
  operatorNoteView,
  tickClocks,
  tierView,
} from '../shared/views.js';
import { mergeDispatch, mergeIncident } from '../shared/merge.js';
import {
  againstTarget,
  localTime,
  placeText,
  recordBox,
  tierOutcome,
} from '../shared/record.js';

const CATEGORIES = [
  'violence',
  'extremism',
  'fight',
  'robbery',
  'theft',
  'fire',
  'dispute',
  'suspicious',
  'other',
];
const SYSTEMS = ['wgs84', 'gcj02', 'bd09'];
const CAN_REPORT = ['operator', 'admin'];
const CAN_VIEW = ['operator', 'admin', 'auditor'];
// The coverage preview waits for typing to pause this long before asking the server.
const PREVIEW_DELAY_MS = 300;
const COORDINATE_RANGE = { lon: 180, lat: 90 };
// What a refused coordinate is shown to copy: a value of its own field (a longitude in the
// longitude's words, a latitude in the latitude's), as a decimal and in degrees, minutes and
// seconds.
const COORDINATE_EXAMPLE = {
  lon: { example: '114.1612', dms: '114°09′40.3″E' },
  lat: { example: '22.849', dms: '22°50′56.4″N' },
};
// The reason of an escalation that alerted the covering tier-1 teams whose duty began after
// the report (dispatch/incidents/service.py ON_DUTY), not a wider ring.
const CAME_ON_DUTY = 'a covering tier-1 team came on duty';

const config = readConfig();
const api = new Api('dispatch.console.token', { timeoutS: config.request_timeout_s });
// The record of an incident opened from 历史警情.
const historyRecord = recordBox(
  api,
  $('#history-record'),
  $('#history-record-title'),
  $('#history-record-body'),
);

const state = {
  me: null,
  // A report of this console's on its way: its incident is said by the result, not the feed.
  reporting: false,
  teams: [],
  incidents: new Map(),
  adding: null, // the 加派 dialog's incident, chosen team, refusal (openAddTeam)
  cards: new Map(),
  live: null,
  view: null,
  zones: null,
  smallZones: null, // on a city's canvas, the joint-defence teams' zones, drawn zoomed in only
  markers: null,
  draft: null,
  reportKey: null,
  renderQueued: false,
  stopAlarm: null,
  lastResult: null,
  retrying: null, // [busy, seconds, attempt, tries] while a report waits to be sent again
  coverage: null, // what the report form says about the point: {teams} or {error}
  legend: null,
  feed: [], // {at, kind, key, vars, ref}: said in the language of the moment (feedText)
  alarms: [], // the breaches the banner names until acknowledged: {key, text}, oldest first
  status: null,
  closed: new Set(),
  hearing: new Set(), // of each list of open incidents on its way, the snapshots heard since
  pointProblems: [], // [{field: 'lon'|'lat', reason: 'number'|'range'|…}] of the typed point
  pointNote: null, // what the form did with a pasted pair or a misplaced value: {key, vars}
  pointRead: [], // [{field, text, value}]: fields typed in degrees-minutes-seconds or with N/E
  previewTimer: null,
  resume: null, // after a reconnect, until caught up: {missed, resync}
  breachSeen: new Set(), // incidentId:tier of every breach this page has raised the alarm for
  unreached: new Set(), // dispatchId:userId of every leader the feed said was not reached
  unalerted: new Set(), // dispatch ids the feed said their alert reached nobody
  silenced: new Set(), // ... of those an operator acknowledged (kept on the device)
  day: null, // the server's date the list was drawn on: dates show on other days' times
  arriving: new Set(), // dispatch ids whose arrival an operator is recording
  lateOnly: false, // the list shows only the incidents with a tier late and nobody on scene
  loading: null, // the first load of the open incidents, asked again until it comes
  listAsked: false, // whether the first load has begun (it waits for the socket's welcome)
  listed: false, // whether a list of open incidents has come: the console knows what is news
  listTimer: null, // when it fires, the first load begins without the welcome
  welcomes: 0, // the sockets this console has been welcomed on
  listSince: -1, // how many welcomes had come when the open incidents were last asked for
  loadProblem: null, // {error, tries} while it has not
  teamsLoading: null, // the teams' load, the same, apart: the list never waits for the map
  teamsProblem: null, // {error, tries} while the teams have not come
  teamsAsked: null, // the teams' load under way: one asked after it (or a sign-out) ends it
  zoneLayers: [], // each team's drawing, in the order of state.teams
  zoneCanvas: null, // the canvas a city's zones are drawn on, rather than an SVG path each
  // Of each open incident held, its external notifications (SMS, webhook, robots) by id:
  // {id, incident_id, dispatch_id, user_id, leader_name, channel, status, attempts, at}
  notices: new Map(),
  // 历史警情: the incidents of a day (Beijing time), closed ones included, a page at a time.
  // `error`: the day could not be read (nothing listed); `moreError`: its next page could not
  // be, the rows listed stay.
  history: { day: null, incidents: [], more: false, error: null, moreError: null },
};
// How many incidents the history asks for at a time (a town may have hundreds a day).
const HISTORY_PAGE = 100;
// How many teams are asked for at a time. A town has hundreds, a city tens of thousands: one
// answer of them all would be megabytes, and each page is drawn as it comes. A town with a
// page of them or more has its zones drawn on one canvas: thousands of SVG paths made every
// drag, zoom and new incident's redraw take a second and more; a smaller town's stay SVG.
const TEAM_PAGE = 1000;
// On a city's canvas the joint-defence teams' zones (100 m, 500 m) are drawn from this zoom in,
// where a fixed post's is wider than its site's dot (6 px at 13): zoomed out over a city, tens of
// thousands of them filled and stroked took most of a second each time the map moved.
const SMALL_ZONES_ZOOM = 13;

function boot() {
  applyLang();
  $('#lang').addEventListener('click', () => setLang(currentLang() === 'zh' ? 'en' : 'zh'));
  $('#report-form').addEventListener('submit', onReport);
  $('#report-form').addEventListener('input', () => {
    state.reportKey = null;
  });
  // The point as typed is checked, drawn and its coverage asked for again on every change.
  for (const field of ['lon', 'lat']) {
    const input = $('#' + field);
    // A pair pasted (or dropped) into either field fills both; one typed is split when the
    // operator leaves the field, never while typing, when "114.1612,2" is not yet the pair.
    input.addEventListener('input', (event) => {
      state.pointNote = null;
      const pasted = event.inputType === 'insertFromPaste' || event.inputType === 'insertFromDrop';
      if (pasted && placePasted(field)) return;
      schedulePreview();
    });
    input.addEventListener('change', () => {
      if (placePasted(field)) state.reportKey = null;
    });
  }
  $('#point-swap').addEventListener('click', swapPoint);
  $('#crs').addEventListener('change', () => {
    // What a link said of its system no longer stands once the operator chose another.
    if (state.pointNote && state.pointNote.key === 'point.link_read' && state.pointNote.crs !== $('#crs').value) {
      state.pointNote = null;
      renderPointNote();
    }
    schedulePreview();
  });
  $('#alarm-silence').addEventListener('click', silenceAlarm);
  $('#history-open').addEventListener('click', openHistory);
  $('#history-close').addEventListener('click', closeHistory);
  $('#history-show').addEventListener('click', () => loadHistory(false));
  $('#history-more').addEventListener('click', () => loadHistory(true));
  $('#history-retry').addEventListener('click', () => loadHistory(!state.history.error));
  $('#history-record-close').addEventListener('click', historyRecord.close);
  $('#add-team-form').addEventListener('submit', submitAddTeam);
  $('#add-team-cancel').addEventListener('click', closeAddTeam);
  $('#add-team-select').addEventListener('change', renderAddTeam);
  $('#add-team').addEventListener('close', () => {
    state.adding = null;
  });
  $('#late-only').addEventListener('click', () => {
    setLateOnly(!state.lateOnly);
    renderIncidents();
  });
  fillSelects();
  // Everything on screen is said again in the new language, what was drawn before included.
  onLangChange(() => {
    fillSelects();
    renderIncidents(true);
    renderResult();
    renderCoverage();
    renderPointProblems();
    renderPointNote();
    renderFeed();
    renderLegend();
    renderLoadProblem();
    if (state.view) {
      translateMap(state.view);
      drawZones();
    }
    if (state.me) $('#who').textContent = state.me.name;
    if (state.status) showStatus(state.status[0], state.status[1]);
    if (state.alarms.length) showAlarm();
    showTitle();
    renderHistory();
    historyRecord.render();
    renderAddTeam();
  });
  unlockOnGesture(() => {
    $('#sound-hint').hidden = true;
  });
  signOut = signInGate(api, {
    admit: (me) =>
      CAN_VIEW.indexOf(me.role) < 0 ? () => officeRefusal(me.role) : null,
    enter: start,
    leave: stop,
  });
  setInterval(tick, 250);
}

function fillSelects() {
  const category = $('#category');
  const chosen = category.value || 'fight';
  clear(category);
  for (const c of CATEGORIES) {
    category.appendChild(h('option', { value: c, text: t('category.' + c) }));
  }
  category.value = chosen;
  const crs = $('#crs');
  const chosenCrs = crs.value || config.tile_crs || 'wgs84';
  clear(crs);
  for (const s of SYSTEMS) crs.appendChild(h('option', { value: s, text: t('crs.' + s) }));
  crs.value = chosenCrs;
}

// Signs out and shows the login, saying `message` (a function giving the text) under the form;
// set once the page has booted.
let signOut = () => {};

// Whoever signs in next on this page sees nothing of the one who signed out: not the record he
// had open, nor his history, feed or late-only filter. The copy kept for the tab goes when he
// signed out himself (`ended`); a session the server ended keeps it (his alone, by his id) for
// when he signs in again in the middle of an incident.
function stop(ended) {
  closeHistory();
  historyRecord.close();
  $('#history-open').hidden = true;
  state.history = { day: null, incidents: [], more: false, error: null, moreError: null };
  clear($('#history-list'));
  $('#history-count').textContent = '';
  $('#history-more').hidden = true;
  $('#history-end').hidden = true;
  $('#history-problem').hidden = true;
  $('#history-day').value = '';
  if (state.me && ended) removeForTab(viewKey());
  state.feed = [];
  renderFeed();
  state.lateOnly = false;
  if (state.loading) state.loading.stop();
  if (state.teamsLoading) state.teamsLoading.stop();
  state.teamsAsked = null;
  state.loadProblem = null;
  state.teamsProblem = null;
  renderLoadProblem();
  if (state.live) state.live.stop();
  state.live = null;
  clearTimeout(state.listTimer);
  state.listTimer = null;
  state.listAsked = false;
  state.listed = false;
  state.welcomes = 0;
  state.listSince = -1;
  state.me = null;
}

async function start(me) {
  state.me = me;
  state.silenced = loadSilenced();
  restoreView();
  $('#report-form').closest('section').hidden = CAN_REPORT.indexOf(me.role) < 0;
  setupMap();
  $('#history-open').hidden = false;
  if (!soundReady()) $('#sound-hint').hidden = false;
  // The open incidents and the teams come over HTTP; the websocket only brings what changes
  // after. Refused or out of reach (a server restarting or busy as the console opens), they are
  // asked for again until they come: a console live but empty would read as "no incidents".
  // The incidents and the live feed do not wait for the teams: a city's take seconds to come
  // and draw, and the list is what an operator needs first.
  state.loading = keepLoading(reloadIncidents, (error, tries) => {
    state.loadProblem = error ? { error, tries } : null;
    renderLoadProblem();
  });
  state.teamsLoading = keepLoading(loadTeams, (error, tries) => {
    state.teamsProblem = error ? { error, tries } : null;
    renderLoadProblem();
  });
  state.teamsLoading.run();
  // The list is asked for once the socket is welcomed, not before it: the welcome of a fresh
  // console is followed by a resync (the operators' mailbox is shared: a new reader starts at
  // its latest message), and a list read before the welcome missed what the resync skips, so
  // it was read again, all its pages. Read after the welcome, it holds all of that, and the
  // resync asks for nothing more (onResync). A socket that fails or is slow to open does not
  // hold the list back.
  state.listTimer = setTimeout(askFirstList, FIRST_LIST_WAIT_MS);
  state.live = new Live({
    userId: me.id,
    token: () => api.token,
    pingS: config.live_ping_s,
    timeoutS: config.live_timeout_s,
    onWelcome: onWelcome,
    onResync: onResync,
    onCaughtUp: onCaughtUp,
    onMessage: onMessage,
    onStatus: showStatus,
    onAuthFailed: () => {
      api.forget();
      signOut(() => t('login.expired'));
    },
  });
  state.live.start();
}

// The teams a page at a time, each drawn as it comes; the map is fitted to them at the end.
async function loadTeams() {
  const asked = (state.teamsAsked = {});
  let teams = [];
  for (;;) {
    // Each page after the last team of the one before: a team retired or added meanwhile
    // moves none past it, where an offset skipped one or drew one twice.
    const after = teams.length ? '&after=' + encodeURIComponent(teams[teams.length - 1].id) : '';
    const page = await api.get('/api/v1/teams?limit=' + TEAM_PAGE + after);
    if (state.teamsAsked !== asked) return;
    if (!teams.length) {
      clearZones();
      state.zoneCanvas = page.length >= TEAM_PAGE ? state.zoneCanvas || L.canvas() : null;
    }
    teams = teams.concat(page);
    state.teams = teams;
    for (const team of page) addZone(team);
    if (page.length < TEAM_PAGE) break;
  }
  fitZones();
  showSmallZones();
  // How many teams the map has drawn, once it has them all.
  $('#map').dataset.teams = String(teams.length);
}

// A team's zone and site, on the canvas of a city or in SVG; kept in the order of the teams.
function addZone(team) {
  if (!state.zoneCanvas) {
    const layer = zoneLayer(state.view, team);
    state.zoneLayers.push(layer);
    state.zones.addLayer(layer);
    return;
  }
  const parts = zoneParts(state.view, team, state.zoneCanvas);
  if (parts.zone) (team.tier === 1 ? state.smallZones : state.zones).addLayer(parts.zone);
  state.zones.addLayer(parts.site);
  // The map is fitted to the sites: a zone off the map has no bounds.
  state.zoneLayers.push(parts.site);
}

function clearZones() {
  state.zones.clearLayers();
  state.smallZones.clearLayers();
  state.zoneLayers = [];
}

// The joint-defence zones of a city's canvas, on the map only when zoomed in enough.
function showSmallZones() {
  const map = state.view.map;
  const shown = !state.zoneCanvas || map.getZoom() >= SMALL_ZONES_ZOOM;
  if (shown !== map.hasLayer(state.smallZones)) {
    if (shown) state.smallZones.addTo(map);
    else map.removeLayer(state.smallZones);
  }
  $('#map').dataset.smallZones = shown ? 'shown' : 'hidden';
}

// Above the incident list: why it may be missing incidents, until they are loaded.
function renderLoadProblem() {
  const line = $('#load-problem');
  const problem = state.loadProblem || state.teamsProblem;
  line.hidden = !problem;
  line.textContent = problem
    ? t('load.retrying', { detail: errorText(problem.error), n: problem.tries })
    : '';
}

function setupMap() {
  if (state.view) {
    state.view.map.invalidateSize();
    return;
  }
  state.view = createMap($('#map'), config);
  state.smallZones = L.layerGroup();
  state.zones = L.layerGroup().addTo(state.view.map);
  state.view.map.on('zoomend', () => {
    if (state.zoneCanvas) showSmallZones();
  });
  state.markers = L.layerGroup().addTo(state.view.map);
  state.view.map.on('click', onMapClick);
  // The alarm banner coming and going resizes the map without resizing the window.
  if (window.ResizeObserver) {
    new ResizeObserver(() => state.view.map.invalidateSize()).observe($('#map'));
  }
  const legend = L.control({ position: 'topright' });
  legend.onAdd = () => {
    state.legend = h('div', { class: 'legend' });
    renderLegend();
    return state.legend;
  };
  legend.addTo(state.view.map);
}

function renderLegend() {
  const box = state.legend;
  if (!box) return;
  clear(box).setAttribute('aria-label', t('zones.legend'));
  for (const kind of Object.keys(ZONE_STYLE)) {
    box.appendChild(
      h(
        'div',
        { dataset: { kind } },
        h('span', { class: 'legend-swatch', style: { borderColor: ZONE_STYLE[kind].color } }),
        t('kind.' + kind),
      ),
    );
  }
}

// The zones drawn again where they are (a language switch: the sites' tooltips).
function drawZones() {
  clearZones();
  for (const team of state.teams) addZone(team);
}

// Fit to the emergency teams: police zones are wide and would zoom the town away.
function fitZones() {
  const layers = state.zoneLayers;
  const local = layers.filter((_, i) => state.teams[i].tier === 1);
  fitAll(state.view, local.length ? local : layers);
}

// How long the first load of the open incidents waits for the socket's welcome (it comes in a
// round trip or two) before it begins without it.
const FIRST_LIST_WAIT_MS = 3000;

function askFirstList() {
  if (state.listAsked || !state.loading) return;
  state.listAsked = true;
  clearTimeout(state.listTimer);
  state.listTimer = null;
  state.loading.run();
}

// The open incidents, as the console opens and after a gap too old to replay: a tier still
// late among them raises the alarm (alarmLate).
async function reloadIncidents() {
  state.listSince = state.welcomes;
  // What the live feed brings while the list is on its way may be newer than the list (read
  // before a report committed, or a close): kept and merged into it, or a console opened
  // (or resynced) just then lost the new incident from its list.
  const heard = new Map();
  state.hearing.add(heard);
  let open;
  try {
    open = await openIncidents(api);
  } finally {
    state.hearing.delete(heard);
  }
  const incidents = new Map();
  for (const incident of open) {
    if (!state.closed.has(incident.id)) incidents.set(incident.id, incident);
  }
  for (const [id, live] of heard) {
    const incident = mergeIncident(incidents.get(id), live);
    if (incident.status === 'open' && !state.closed.has(id)) incidents.set(id, incident);
  }
  state.incidents = incidents;
  state.listed = true;
  // Those closed while the console was away past the replay are not in the list.
  for (const breach of state.alarms.slice()) {
    const id = breach.key.slice(0, breach.key.lastIndexOf(':'));
    if (!incidents.has(id)) dropAlarms(id);
  }
  for (const id of Array.from(state.notices.keys())) {
    if (!state.incidents.has(id)) state.notices.delete(id);
  }
  scheduleRender();
  forgetSilenced();
  alarmLate(true);
  // What the notifiers did before the console opened (or while it was away past the replay)
  // comes over HTTP; what they do from now on, over the websocket. Not waited for: the list
  // is the console's first need, these follow.
  loadNotifications(open.filter((incident) => incident.dispatches.length).map((i) => i.id));
}

// Every tier of an open incident past its deadline with nobody of it on scene raises the alarm,
// unless this page has raised it already or an operator silenced it: found when the console
// opens (reloaded while an incident is late), when it has caught up after a dropped line (the
// replay brought the breach, however long ago it happened) and after a reload following a gap
// too old to replay. A tier met late has nothing left to do about it. `withFeed`: the feed
// lists the breaches too (a replay listed them as it brought them).
function alarmLate(withFeed) {
  const breaches = [];
  for (const incident of state.incidents.values()) {
    if (incident.status !== 'open') continue;
    for (const tier of incident.chain) {
      if (tier.status !== 'breached' || tier.arrived_at) continue;
      const key = breachKey(incident, tier);
      if (state.breachSeen.has(key) || state.silenced.has(key)) continue;
      const text = breachText(incident, tier, 'alarm.item');
      breaches.push({ key, text, vars: breachVars(incident, tier) });
    }
  }
  if (!breaches.length) return;
  if (withFeed) {
    for (const breach of breaches) {
      // A console reloaded has the line in its feed already (restoreView).
      if (!state.feed.some((entry) => entry.ref === breach.key)) {
        addFeed('feed.breached', breach.vars, 'feed-breach', breach.key);
      }
    }
  }
  raiseAlarm(breaches);
}

// The breaches an operator silenced are kept on the device, per operator: a console reloaded
// (or opened again) does not sound again for what was acknowledged. Only those of incidents
// still open are kept.
function silencedKey() {
  return 'dispatch.console.silenced.' + state.me.id;
}

function loadSilenced() {
  try {
    const stored = JSON.parse(load(silencedKey()) || '[]');
    return new Set(Array.isArray(stored) ? stored.map(String) : []);
  } catch (_) {
    return new Set();
  }
}

function saveSilenced() {
  if (state.me) save(silencedKey(), JSON.stringify(Array.from(state.silenced)));
}

function forgetSilenced() {
  for (const key of Array.from(state.silenced)) {
    if (!state.incidents.has(key.slice(0, key.lastIndexOf(':')))) state.silenced.delete(key);
  }
  saveSilenced();
}

function breachKey(incident, tier) {
  return incident.id + ':' + tier.tier;
}

function breachVars(incident, tier) {
  return {
    tier: { t: 'tier.' + tier.tier },
    category: { t: 'category.' + incident.category },
    t: clockTime(tier.breached_at || tier.deadline),
  };
}

// The alarm banner's item, which its heading introduces.
function breachText(incident, tier, key) {
  const vars = breachVars(incident, tier);
  return () => feedText({ key, vars });
}

// ---------------------------------------------------------------- the live feed

// After a reconnect the feed says how the page caught up once it has: by replaying what it
// missed, or, when the gap was too old to replay, by reloading everything.
function onWelcome(_, info) {
  state.resume = info.reconnected ? { missed: info.missed, resync: false } : null;
  state.welcomes += 1;
  // The server answers again: what the console could not load is asked for now.
  if (!state.listAsked) askFirstList();
  else if (state.loadProblem) state.loading.run();
  if (state.teamsProblem) state.teamsLoading.run();
}

async function onResync() {
  if (state.resume) state.resume.resync = true;
  // A list asked for since this socket's welcome (on its way, or asked again until it comes)
  // was read after every message the resync skips: it needs no second read.
  if (state.listSince === state.welcomes) return;
  try {
    await reloadIncidents();
  } catch (_) {
    // The next reconnect resyncs again.
  }
}

function onCaughtUp() {
  const resume = state.resume;
  state.resume = null;
  // Breaches the replay brought are sounded now, on what is still late once it is over.
  if (!(resume && resume.resync)) alarmLate(false);
  if (!resume) return;
  if (resume.resync) addFeed('conn.resync', {}, 'feed-warn');
  else addFeed('conn.resumed', { n: resume.missed }, 'feed-warn');
}

function showStatus(status, attempt) {
  state.status = [status, attempt];
  // No welcome to wait for: the socket failed before it came.
  if (status === 'reconnecting' || status === 'offline') askFirstList();
  const el = $('#conn');
  el.hidden = false;
  el.dataset.state = status;
  el.textContent = status === 'reconnecting' ? t('conn.reconnecting', { n: attempt }) : t('conn.' + status);
}

function onMessage(message, info) {
  const data = message.data || {};
  if (message.type === 'incident.updated') {
    // What a line that dropped missed (a report, an accept, an arrival, a close) is listed as
    // the replay brings it, as its breaches are, but not said: the line saying how many
    // messages the console caught up is. A console whose list is yet to come (reloaded,
    // opened) cannot tell news from what the list will hold, and lists none of it.
    if (!info.replayed) applyIncident(data, false);
    else applyIncident(data, !(state.listed && !state.hearing.size), true);
  } else if (message.type === 'dispatches.updated') {
    // Only the hops of these dispatches moved; an incident this console does not hold is
    // skipped (a closed one, or one it will load whole).
    for (const dispatch of data.dispatches || []) {
      const incident = state.incidents.get(dispatch.incident_id);
      if (incident) applyIncident(mergeDispatch(incident, dispatch), true);
    }
  } else if (message.type === 'chain.breached') {
    applyIncident(data.incident, true);
    const incident = data.incident;
    const tier = data.tier;
    const key = breachKey(incident, tier);
    addFeed('feed.breached', breachVars(incident, tier), 'feed-breach', key, false, tier.breached_at);
    // A replayed one is judged once the replay is over (onCaughtUp): the incident may have
    // been closed or reached since.
    // A tier whose team is there by now (the arrival came first) has nothing left to act on.
    const held = state.incidents.get(incident.id);
    const met = held && held.chain.some((one) => one.tier === tier.tier && one.arrived_at);
    if (!info.replayed && held && !met && !state.silenced.has(key)) {
      raiseAlarm([{ key, text: breachText(incident, tier, 'alarm.item') }]);
    }
  } else if (message.type === 'notification.updated') {
    const note = noticeOf(data, data.notification_id, data.attempts, data.at);
    if (!keepNotice(note)) return;
    scheduleRender();
    // A notification begun: the leader's phone did not acknowledge the alert. The feed says
    // so once for him and the dispatch, however many channels now seek him (the card says
    // which), before any of them has an outcome.
    const unreached = note.dispatch_id + ':' + note.user_id;
    if (note.status === 'pending' && !note.attempts && !state.unreached.has(unreached)) {
      state.unreached.add(unreached);
      const incident = state.incidents.get(note.incident_id);
      const d = incident && incident.dispatches.find((one) => one.id === note.dispatch_id);
      addFeed(
        'feed.unreached',
        { leader: note.leader_name, team: d ? d.team_name : '' },
        'feed-breach',
      );
    }
    // A text sent or given up is news for the feed; one stopped (the leader answered, the
    // incident closed) only changes its line on the card.
    if (note.status === 'notified' || note.status === 'failed') {
      const incident = state.incidents.get(note.incident_id);
      const d = incident && incident.dispatches.find((one) => one.id === note.dispatch_id);
      addFeed(
        'feed.notice',
        { leader: note.leader_name, team: d ? d.team_name : '', note: { notice: note } },
        note.status === 'failed' ? 'feed-breach' : '',
      );
    }
  } else if (message.type === 'nobody_alerted') {
    // Teams just dispatched (at the report, by the escalation, by hand) with no enabled leader
    // account: their alert reached nobody. Said at once, to radio the team or add another;
    // their cards say it for as long as the incident is open.
    for (const team of data.teams || []) {
      // The team this console is adding by hand right now: the answer to its 加派 says it.
      const adding = state.adding;
      const own =
        adding && adding.busy && adding.id === data.incident_id && adding.teamId === team.team_id;
      if (!own) sayUnalerted(team.dispatch_id, team.team_name, team.tier, data.at);
    }
  } else if (message.type === 'escalation') {
    if (data.incident) applyIncident(data.incident, true);
    const added = data.dispatches || [];
    const incident = data.incident || state.incidents.get(data.incident_id);
    // A wider ring (no tier-1 team accepted in time, or none covers the point), or a covering
    // tier-1 team whose duty began after the report: the server's reason says which. Either
    // may find no team to add, and says so.
    const kind = data.reason === CAME_ON_DUTY ? 'feed.on_duty' : 'feed.escalation';
    addFeed(
      added.length ? kind : kind + '_none',
      {
        ring: data.ring_m === undefined ? '' : Math.round(data.ring_m),
        category: incident ? { t: 'category.' + incident.category } : '',
        n: added.length,
        teams: { list: added.map((d) => d.team_name) },
      },
      'feed-warn',
      undefined,
      false,
      data.at,
    );
  }
}

// The feed's line for a dispatch whose alert reached nobody, once: of a team this console adds
// by hand, the answer to its 加派 says it instead (已加派 …，但无可用队长账号), whichever of
// that answer and the board's message comes first.
function sayUnalerted(dispatchId, teamName, tier, when = null) {
  if (state.unalerted.has(dispatchId)) return;
  state.unalerted.add(dispatchId);
  addFeed(
    'feed.nobody_alerted',
    { team: teamName, tier: { t: 'tier.short.' + tier } },
    'feed-breach',
    undefined,
    false,
    when,
  );
}

// Keep the newest state of each open incident; list what changed in the feed.
function applyIncident(snapshot, quiet, unsaid = false) {
  if (!snapshot || !snapshot.id) return;
  for (const heard of state.hearing) {
    heard.set(snapshot.id, mergeIncident(heard.get(snapshot.id), snapshot));
  }
  historyTake(snapshot);
  if (state.closed.has(snapshot.id)) return;
  const before = state.incidents.get(snapshot.id);
  const incident = mergeIncident(before, snapshot);
  if (!quiet) describeChange(before, incident, unsaid);
  if (incident.status === 'open') {
    state.incidents.set(incident.id, incident);
    for (const tier of incident.chain) {
      if (tier.arrived_at) dropAlarms(incident.id, tier.tier);
    }
  } else {
    state.incidents.delete(incident.id);
    state.notices.delete(incident.id);
    state.closed.add(incident.id);
    dropAlarms(incident.id);
  }
  scheduleRender();
  if (state.adding && state.adding.id === snapshot.id) renderAddTeam();
}

function describeChange(before, after, unsaid) {
  const category = { t: 'category.' + after.category };
  if (after.status === 'closed') {
    if (before) addFeed('feed.closed', { category }, '', undefined, unsaid, after.closed_at);
    return;
  }
  if (!before) {
    // The report this console is sending is said by its result (who was alerted, what is
    // uncovered): its feed line is not said as well.
    const sentHere = after.reported_by === state.me?.id && state.reporting;
    addFeed(
      'feed.reported',
      { category, n: after.dispatches.length },
      '',
      undefined,
      sentHere || unsaid,
      after.reported_at,
    );
    return;
  }
  const old = new Map(before.dispatches.map((d) => [d.id, d]));
  for (const d of after.dispatches) {
    const was = old.get(d.id) || {};
    if (!old.has(d.id) && d.added_by === 'operator') {
      addFeed('add.done', { team: d.team_name }, '', undefined, unsaid, d.alerted_at);
    }
    // An accept the arrival stood for is no news of its own: the arrival says it.
    if (d.accepted_at && !d.accepted_implied && !was.accepted_at) {
      addFeed('feed.accepted', { team: d.team_name }, '', undefined, unsaid, d.accepted_at);
    }
    if (d.arrived_at && !was.arrived_at) {
      const source = d.arrival_source;
      addFeed(
        'feed.arrived',
        { team: d.team_name, source: { t: 'source.' + source } },
        'feed-good',
        undefined,
        unsaid,
        d.arrived_at,
      );
    }
  }
}

// A line is kept as its i18n key and values, said again when the language changes: a value is
// plain, {t: key} (a category, a tier), {notice} (a notification's outcome) or {list} (team
// names). `ref`: what the line is about, where the same thing must not be listed twice.
// `unsaid`: listed but not said, where the page says it otherwise.
// `when`: the server's time the line's news happened at (a report, an accept, an arrival, a
// breach, an escalation, a close): replayed after a dropped line, it is listed at that time,
// not when it was heard.
function addFeed(key, vars, kind, ref, unsaid = false, when = null) {
  const now = when ? ms(when) : state.live ? state.live.serverNow() : Date.now();
  const at = new Date(now + 8 * 3600 * 1000).toISOString().slice(11, 19);
  state.feed.unshift({ at, kind, key, vars, ref });
  if (state.feed.length > 200) state.feed.length = 200;
  const feed = $('#feed');
  feed.insertBefore(feedItem(state.feed[0]), feed.firstChild);
  while (feed.childNodes.length > 200) feed.removeChild(feed.lastChild);
  saveView();
  // Said as it comes, without its time; a breach is said by the alarm, assertively, once
  // (raiseAlarm), or not at all when an operator has silenced it already.
  if (!unsaid && !(kind === 'feed-breach' && ref)) announce($('#said'), feedText(state.feed[0]));
}

function feedValue(value) {
  if (!value || typeof value !== 'object') return value;
  if (value.t) return t(value.t);
  if (value.notice) return noticeText(value.notice);
  if (value.list) return value.list.join(t('list.sep'));
  return '';
}

function feedText(entry) {
  const vars = {};
  for (const name of Object.keys(entry.vars || {})) vars[name] = feedValue(entry.vars[name]);
  return t(entry.key, vars);
}

function feedItem(entry) {
  return h('li', { class: entry.kind || null }, h('time', { text: entry.at }), feedText(entry));
}

// An operator who reloads the console in the middle of an incident (F5) finds the feed and the
// late-only filter as he left them: kept for the tab (sessionStorage), per operator. The
// incidents come from the server again; a breach already in the feed is not listed twice.
function viewKey() {
  return 'dispatch.console.view.' + state.me.id;
}

function saveView() {
  if (!state.me) return;
  saveForTab(viewKey(), JSON.stringify({ lateOnly: state.lateOnly, feed: state.feed }));
}

function restoreView() {
  let stored = null;
  try {
    stored = JSON.parse(loadForTab(viewKey()) || 'null');
  } catch (_) {
    stored = null;
  }
  const feed = stored && Array.isArray(stored.feed) ? stored.feed : [];
  state.feed = feed.filter((entry) => entry && typeof entry.key === 'string').slice(0, 200);
  state.lateOnly = !!(stored && stored.lateOnly);
  renderFeed();
}

function setLateOnly(value) {
  if (state.lateOnly === value) return;
  state.lateOnly = value;
  saveView();
}

function renderFeed() {
  const feed = clear($('#feed'));
  for (const entry of state.feed) feed.appendChild(feedItem(entry));
}

// ---------------------------------------------------------------- external notifications

// How far along a notification is: one ends once (sent, failed or stopped), but a text given up
// may still be sent after all (its gateway's late answer). Kept furthest along, whichever of
// the websocket and the HTTP answer comes first.
const NOTICE_RANK = { pending: 0, stopped: 1, failed: 1, notified: 2 };

// A notification from the board's `notification.updated` or the incident's notifications over
// HTTP (`attempts` a count, `at` when it ended).
function noticeOf(data, id, attempts, at) {
  return {
    id,
    incident_id: data.incident_id,
    dispatch_id: data.dispatch_id,
    user_id: data.user_id,
    leader_name: data.leader_name || '',
    channel: data.channel,
    status: data.status,
    attempts: attempts || 0,
    at: at || null,
    held: data.held || null,
    held_until: data.held_until || null,
  };
}

// Kept if the incident is open here and the notification is further along than held; whether
// it was.
function keepNotice(note) {
  if (!state.incidents.has(note.incident_id)) return false;
  let notes = state.notices.get(note.incident_id);
  if (!notes) {
    notes = new Map();
    state.notices.set(note.incident_id, notes);
  }
  const held = notes.get(note.id);
  if (held) {
    const rank = NOTICE_RANK[note.status] || 0;
    const heldRank = NOTICE_RANK[held.status] || 0;
    if (rank < heldRank || (rank === heldRank && note.attempts <= held.attempts)) return false;
  }
  notes.set(note.id, note);
  return true;
}

// The open incidents' notifications, a few requests at a time; one that fails is left to the
// websocket's news.
async function loadNotifications(ids) {
  const queue = ids.slice();
  const worker = async () => {
    while (queue.length) {
      const id = queue.shift();
      let found;
      try {
        found = await api.get('/api/v1/incidents/' + id + '/notifications');
      } catch (_) {
        continue;
      }
      let changed = false;
      for (const n of found) {
        changed = keepNotice(noticeOf(n, n.id, n.attempts.length, n.finished_at)) || changed;
      }
      if (changed) scheduleRender();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

// One notification as the operator reads it: 短信发送中, 短信发送失败 2 次，重试中,
// 短信已发送 10:01:02, 短信发送失败（尝试 3 次）…
function noticeText(note) {
  const text = noticeStatusText(note);
  const held = heldText(note.held, note.held_until);
  return held ? t('notify.with_held', { text, held }) : text;
}

function noticeStatusText(note) {
  const vars = {
    channel: t('notify.channel.' + note.channel),
    n: note.attempts,
    t: note.at ? clockTime(note.at) : '',
  };
  if (note.status === 'failed' && !note.attempts) return t('notify.no_phone', vars);
  // Still pending with tries on record: each of them failed (a success settles it).
  if (note.status === 'pending' && note.attempts) return t('notify.retrying', vars);
  return t('notify.' + note.status, vars);
}

// Under a dispatch: per leader of the team its notifications went to, what came of each.
function noticesView(incidentId, dispatchId) {
  const notes = state.notices.get(incidentId);
  if (!notes) return null;
  const byLeader = new Map();
  for (const note of notes.values()) {
    if (note.dispatch_id !== dispatchId) continue;
    if (!byLeader.has(note.user_id)) byLeader.set(note.user_id, []);
    byLeader.get(note.user_id).push(note);
  }
  if (!byLeader.size) return null;
  return h(
    'ul',
    { class: 'notifications', 'aria-label': t('notify.title') },
    Array.from(byLeader.values()).map((leaderNotes) =>
      h(
        'li',
        { dataset: { userId: leaderNotes[0].user_id } },
        h('span', {
          class: 'notification-leader',
          text: t('notify.leader', { leader: leaderNotes[0].leader_name }),
        }),
        leaderNotes.map((note, i) => [
          i ? t('notify.sep') : null,
          h('span', {
            class: 'notification',
            dataset: { channel: note.channel, status: note.status },
            text: noticeText(note),
          }),
        ]),
      ),
    ),
  );
}

// ---------------------------------------------------------------- alarm

// `breaches`: [{key, text}], key incidentId:tier, text a function (the banner follows a
// language switch). The banner names every breach raised since an operator last acknowledged,
// not only the latest: 确认并静音 acknowledges all it names, so it must name all it silences.
function raiseAlarm(breaches) {
  const raised = [];
  for (const breach of breaches) {
    state.breachSeen.add(breach.key);
    if (!state.alarms.some((held) => held.key === breach.key)) {
      state.alarms.push(breach);
      raised.push(breach);
    }
  }
  showAlarm();
  // The banner names every breach since the last acknowledgement; a screen reader hears only
  // the ones new to it, once, at once (not again as more come, nor at a language switch).
  if (raised.length) announce($('#said-now'), alarmText(raised));
  $('#alarm').hidden = false;
  if (!state.stopAlarm) {
    state.stopAlarm = repeat(() => {
      const played = siren(2.5);
      $('#alarm').dataset.sounding = String(played);
      if (!played) $('#sound-hint').hidden = false;
    }, 8000);
  }
  showTitle();
}

// Counted in incidents (起), as the late count beside the list is; an incident with more than
// one tier late says how many tiers.
function showAlarm() {
  $('#alarm-text').textContent = alarmText(state.alarms);
  $('#alarm').dataset.count = String(state.alarms.length);
}

function alarmText(breaches) {
  const n = breaches.length;
  const ids = breaches.map((breach) => breach.key.slice(0, breach.key.lastIndexOf(':')));
  const incidents = new Set(ids).size;
  const text = breaches.map((breach) => breach.text()).join(t('alarm.sep'));
  let key = 'alarm.breach';
  if (n > 1) key = incidents === n ? 'alarm.breaches' : 'alarm.breaches_tiers';
  return t(key, { n: incidents, tiers: n, text });
}

// An incident closed (here, or by another operator at his console), or a late tier whose team
// has arrived, has nothing left to act on: its breaches leave the banner, and with none left the
// banner goes and the siren stops, with nothing for this operator to acknowledge. `tier`: that
// tier's alone; without it, every tier of the incident.
function dropAlarms(incidentId, tier) {
  const gone = (key) =>
    tier === undefined ? key.startsWith(incidentId + ':') : key === incidentId + ':' + tier;
  const left = state.alarms.filter((breach) => !gone(breach.key));
  if (left.length === state.alarms.length) return;
  state.alarms = left;
  if (left.length) {
    showAlarm();
    return;
  }
  if (state.stopAlarm) state.stopAlarm();
  state.stopAlarm = null;
  $('#alarm').hidden = true;
  showTitle();
}

function silenceAlarm() {
  if (state.stopAlarm) state.stopAlarm();
  state.stopAlarm = null;
  for (const breach of state.alarms) state.silenced.add(breach.key);
  saveSilenced();
  state.alarms = [];
  $('#alarm').hidden = true;
  showTitle();
}

function showTitle() {
  document.title = (state.stopAlarm ? '⚠ ' : '') + t('app.console');
}

// ---------------------------------------------------------------- reporting

function onMapClick(event) {
  if (!state.me || CAN_REPORT.indexOf(state.me.role) < 0) return;
  // A point picked on the map is in the tiles' coordinate system; the server converts it.
  $('#lon').value = event.latlng.lng.toFixed(6);
  $('#lat').value = event.latlng.lat.toFixed(6);
  $('#crs').value = state.view.tileCrs;
  state.reportKey = null;
  state.pointNote = null;
  clearTimeout(state.previewTimer);
  previewCoverage();
}

// The other coordinate field.
const OTHER = { lon: 'lat', lat: 'lon' };

// A coordinate as the form writes it back: the digits given, or at most 7 decimals (1 cm).
function coordinateText(value) {
  return String(Number(value.toFixed(7)));
}

// What is in `field` (just pasted, or left after typing) put where it belongs: a whole pair
// into both fields in the order it says or the ranges of China show, and a value named as
// the other axis (22°50'56.4"N in the longitude field) into the other field when that one is
// empty. The form says what it did. False when there was nothing to place: a pair whose order
// nothing shows is left as it is, and the form says why (formPoint).
function placePasted(field) {
  const text = $('#' + field).value;
  const link = readLink(text);
  if (link) {
    // A link whose point cannot be trusted stays, and the form says why (formPoint).
    if (link.refused) return false;
    $('#lon').value = coordinateText(link.lon);
    $('#lat').value = coordinateText(link.lat);
    $('#crs').value = link.crs;
    state.pointNote = {
      key: 'point.link_read',
      vars: { lon: coordinateText(link.lon), lat: coordinateText(link.lat) },
      source: link.source,
      crs: link.crs,
      view: link.view,
    };
    clearTimeout(state.previewTimer);
    previewCoverage();
    return true;
  }
  const pair = readPair(text);
  if (pair && !pair.ambiguous) {
    $('#lon').value = coordinateText(pair.lon);
    $('#lat').value = coordinateText(pair.lat);
    const order = pair.by === 'labels' ? 'labels' : pair.latFirst ? 'lat_first' : 'lon_first';
    state.pointNote = {
      key: 'point.split',
      vars: { lon: coordinateText(pair.lon), lat: coordinateText(pair.lat) },
      order,
      comma: pair.decimal === null ? null : { text: text.trim(), decimal: coordinateText(pair.decimal) },
    };
  } else {
    const one = readOne(text);
    const other = OTHER[field];
    if (!one || one.axis !== other || $('#' + other).value.trim()) return false;
    $('#' + other).value = text.trim();
    $('#' + field).value = '';
    state.pointNote = {
      key: 'point.moved',
      vars: { text: text.trim(), from: t('field.' + field), to: t('field.' + other) },
      from: field,
      to: other,
    };
  }
  clearTimeout(state.previewTimer);
  previewCoverage();
  return true;
}

// Longitude and latitude each in the other's field, as the form shows when it finds them so:
// exchanged at the operator's word, never by itself.
function swapPoint() {
  const lon = $('#lon').value;
  $('#lon').value = $('#lat').value;
  $('#lat').value = lon;
  state.pointNote = { key: 'point.swapped_done', vars: {} };
  state.reportKey = null;
  clearTimeout(state.previewTimer);
  previewCoverage();
  $('#lon').focus();
}

// The point in the form, and what is wrong with it: a field that is not one whole number, or
// one out of range. An empty field is a problem only when `complete` (the form is sent). A
// whole pair still in one field, a pair whose order nothing shows, a value named as the other
// axis, or a latitude and a longitude of China each in the other's field are problems too:
// nothing is sent that may be in the wrong place.
function formPoint(complete) {
  const point = { crs: $('#crs').value, problems: [], read: [] };
  for (const field of ['lon', 'lat']) {
    const text = $('#' + field).value;
    const one = readOne(text);
    const value = one ? one.value : NaN;
    point[field] = value;
    if (!text.trim()) {
      if (complete) point.problems.push({ field, reason: 'empty' });
      continue;
    }
    const link = readLink(text);
    if (link) {
      // A link is read when pasted or when the operator leaves the field; one left here is
      // one whose point cannot be trusted, or one still being typed.
      point.problems.push(
        link.refused
          ? { field, reason: 'link_' + link.refused, source: link.source, vars: { system: link.system || '' } }
          : { field, reason: 'link' },
      );
      continue;
    }
    const pair = one ? null : readPair(text);
    if (pair && pair.ambiguous) {
      point.problems.push({
        field,
        reason: 'ambiguous',
        vars: { a: coordinateText(pair.ambiguous[0]), b: coordinateText(pair.ambiguous[1]) },
      });
    } else if (pair) {
      point.problems.push({ field, reason: 'pair' });
    } else if (!one) {
      point.problems.push({ field, reason: 'number' });
    } else if (one.axis && one.axis !== field) {
      point.problems.push({ field, reason: 'axis', vars: { text: text.trim(), other: t('field.' + one.axis) } });
    } else if (Math.abs(value) > COORDINATE_RANGE[field]) {
      point.problems.push({ field, reason: 'range' });
    } else if (!one.plain) {
      point.read.push({ field, text: text.trim(), value, comma: !!one.comma });
    }
  }
  const both = Number.isFinite(point.lon) && Number.isFinite(point.lat);
  const axisNamed = point.problems.some((p) => p.reason === 'axis');
  if (both && !axisNamed && looksSwapped(point.lon, point.lat)) {
    point.problems = [
      { field: 'lon', reason: 'swapped', vars: { lon: coordinateText(point.lon), lat: coordinateText(point.lat) } },
      { field: 'lat', reason: 'swapped', silent: true },
    ];
    point.read = [];
  }
  return point;
}

// Each coordinate field says whether it holds a usable number, and the form says which is not.
function renderPointProblems() {
  const problems = state.pointProblems;
  for (const field of ['lon', 'lat']) {
    const bad = problems.some((p) => p.field === field);
    if (bad) $('#' + field).setAttribute('aria-invalid', 'true');
    else $('#' + field).removeAttribute('aria-invalid');
  }
  const box = $('#point-error');
  box.textContent = problems
    .filter((p) => !p.silent)
    .map((p) =>
      t('point.' + p.reason, {
        field: t('field.' + p.field),
        max: COORDINATE_RANGE[p.field],
        ...COORDINATE_EXAMPLE[p.field],
        source: t('link.source.' + (p.source || 'other')),
        ...(p.vars || {}),
      }),
    )
    .join(t('error.sep'));
  box.hidden = !problems.length;
  // Swapped by their values, or by their marks (22.849N in Longitude, 114.1612E in Latitude).
  const byMarks = problems.filter((p) => p.reason === 'axis').length === 2;
  $('#point-swap').hidden = !(byMarks || problems.some((p) => p.reason === 'swapped'));
}

// What the form did with what was pasted, and how it read a coordinate in degrees, minutes and
// seconds or with a hemisphere, for the operator to check against what he was given.
function renderPointNote() {
  const lines = [];
  const note = state.pointNote;
  if (note) {
    const vars = { ...note.vars };
    if (note.key === 'point.moved') {
      vars.from = t('field.' + note.from);
      vars.to = t('field.' + note.to);
    }
    if (note.key === 'point.link_read') {
      vars.source = t('link.source.' + note.source);
      vars.crs = t('link.crs.' + note.crs);
    }
    let line = t(note.key, vars);
    if (note.view) line += t('point.link_view');
    if (note.source === 'google' && note.crs === 'gcj02') line += t('point.link_google_china');
    if (note.order) line += t('point.order.' + note.order);
    if (note.comma) line += t('point.order.comma', note.comma);
    if (note.key === 'point.split') line += t('point.check_crs');
    lines.push(line);
  }
  for (const r of state.pointRead) {
    const read = t('point.read', { field: t('field.' + r.field), text: r.text, value: r.value.toFixed(6) });
    lines.push(r.comma ? read + t('point.read_comma') : read);
  }
  const box = $('#point-note');
  box.textContent = lines.join(' ');
  box.hidden = !lines.length;
}

// Typing, pasting or choosing another system: the preview follows once typing pauses.
function schedulePreview() {
  clearTimeout(state.previewTimer);
  state.previewTimer = setTimeout(previewCoverage, PREVIEW_DELAY_MS);
}

// The point in the form checked, drawn on the map and the teams covering it listed; nothing
// (no marker, no list) while it is incomplete or invalid.
async function previewCoverage() {
  const point = formPoint(false);
  state.pointProblems = point.problems;
  state.pointRead = point.read;
  renderPointProblems();
  renderPointNote();
  state.coverage = null;
  renderCoverage();
  const usable = !point.problems.length && Number.isFinite(point.lon) && Number.isFinite(point.lat);
  if (state.draft) state.draft.remove();
  state.draft = null;
  if (!usable) return;
  if (state.view) {
    state.draft = draftMarker(state.view.typedToMap(point.lon, point.lat, point.crs)).addTo(state.view.map);
  }
  const query = 'lon=' + point.lon + '&lat=' + point.lat + '&crs=' + point.crs;
  const asked = {};
  state.coverage = asked;
  try {
    asked.teams = await api.get('/api/v1/teams/covering?' + query);
  } catch (error) {
    asked.error = error;
  }
  // A later click asked again meanwhile: its answer is the one to show.
  if (state.coverage === asked) renderCoverage();
}

function renderCoverage() {
  const box = clear($('#coverage'));
  const coverage = state.coverage;
  if (!coverage || !(coverage.teams || coverage.error)) return;
  if (coverage.error) {
    box.appendChild(h('p', { class: 'error', text: t('error.generic', { detail: errorText(coverage.error) }) }));
    return;
  }
  const teams = coverage.teams;
  box.appendChild(
    h('p', { text: teams.length ? t('report.covering', { n: teams.length }) : t('report.none') }),
  );
  box.appendChild(
    h(
      'ul',
      null,
      teams.map((team) =>
        h('li', { text: team.name + ' · ' + t('tier.short.' + team.tier) + ' · ' + metres(team.distance_m) }),
      ),
    ),
  );
  const covered = new Set(teams.map((team) => team.tier));
  const missing = [1, 2, 3].filter((tier) => !covered.has(tier));
  if (missing.length) box.appendChild(uncoveredLine(missing));
}

function uncoveredLine(tiers) {
  return h('p', {
    class: 'uncovered',
    dataset: { tiers: tiers.join(',') },
    text: t('report.uncovered', { tiers: tiers.map((n) => t('tier.' + n)).join(t('list.sep')) }),
  });
}

async function onReport(event) {
  event.preventDefault();
  clearTimeout(state.previewTimer);
  const point = formPoint(true);
  state.pointProblems = point.problems;
  state.pointRead = point.read;
  renderPointProblems();
  renderPointNote();
  if (point.problems.length) {
    // Nothing is sent: the field is marked and named, the operator corrects it.
    $('#' + point.problems[0].field).focus();
    return;
  }
  const body = {
    location: { lon: point.lon, lat: point.lat, crs: point.crs },
    category: $('#category').value,
  };
  const description = $('#description').value.trim();
  if (description) body.description = description;
  // The same key on a retry of this very report: a lost reply never makes a second incident.
  if (!state.reportKey) state.reportKey = newKey();
  const button = $('#report-submit');
  button.disabled = true;
  state.reporting = true;
  try {
    const incident = await postReport(body, state.reportKey);
    state.reportKey = null;
    state.lastResult = { incident, error: null };
    applyIncident(incident, false);
    $('#description').value = '';
    state.coverage = null;
    renderCoverage();
    if (state.draft) state.draft.remove();
    state.draft = null;
  } catch (error) {
    // A network failure (TypeError) has no status: said as the server being out of reach.
    state.lastResult = { incident: null, error: { status: error.status || 0, error } };
  } finally {
    state.retrying = null;
    state.reporting = false;
    button.disabled = false;
  }
  renderResult();
}

// A report the server was too busy to take (503), or that never reached it, is sent again by
// itself, with the same key, so that an operator in a burst of reports need not press again:
// the key keeps it one incident however many tries reach the server.
function postReport(body, key) {
  return api.postRetrying('/api/v1/incidents', body, { 'idempotency-key': key }, showRetrying);
}

function showRetrying(busy, seconds, attempt, tries) {
  state.retrying = [busy, seconds, attempt, tries];
  renderResult();
}

// What the operator should do about a report the server refused, by the kind of refusal.
function failureAdvice(status) {
  if (status === 400 || status === 409 || status === 422) return t('report.failed_input');
  if (status === 401 || status === 403) return t('report.failed_denied');
  if (!status || status === 429 || status === 503 || status === 504) return t('report.failed_busy');
  return t('report.failed_other');
}

// What the report did, at once: who was alerted and which tiers nobody covers. The box's
// data-state says how it went (ok, error, retrying), and its colour with it.
function renderResult() {
  const box = clear($('#report-result'));
  delete box.dataset.incidentId;
  delete box.dataset.state;
  delete box.dataset.status;
  delete box.dataset.alerted;
  if (state.retrying) {
    const [busy, seconds, attempt, tries] = state.retrying;
    const text = t(busy ? 'retry.busy' : 'retry.unreached', { s: seconds, n: attempt, max: tries });
    box.dataset.state = 'retrying';
    box.appendChild(h('p', { class: 'retrying', text }));
    return;
  }
  const result = state.lastResult;
  if (!result) return;
  if (result.error) {
    box.dataset.state = 'error';
    box.dataset.status = String(result.error.status);
    box.appendChild(h('p', { class: 'error result-title', text: t('report.failed') }));
    box.appendChild(h('p', { text: failureAdvice(result.error.status) }));
    box.appendChild(h('p', { class: 'reason', text: t('report.reason', { detail: errorText(result.error.error) }) }));
    return;
  }
  const incident = result.incident;
  const ds = incident.dispatches;
  // A team dispatched with no enabled leader account: its alert reached nobody. It is not
  // counted among the teams notified, but named apart on red, with what to do.
  const reached = ds.filter((d) => !d.nobody_alerted);
  const unreached = ds.filter((d) => d.nobody_alerted);
  const missing = incident.chain.filter((tier) => !tier.covered).map((tier) => tier.tier);
  box.dataset.state = 'ok';
  box.dataset.incidentId = incident.id;
  // data-alerted: all teams dispatched alerted and every tier covered (green); some (green,
  // the teams whose alert reached nobody and the tiers nobody covers on red); none: the
  // incident is recorded but nobody was alerted, red as a failure.
  box.dataset.alerted = !reached.length ? 'none' : missing.length || unreached.length ? 'some' : 'all';
  if (!reached.length) {
    box.appendChild(h('p', { class: 'error result-title', text: t('report.no_team') }));
    const advice = ds.length ? 'report.nobody_alerted_advice' : 'report.no_team_advice';
    box.appendChild(h('p', { class: 'advice', text: t(advice) }));
  } else {
    box.appendChild(h('p', { class: 'result-title', text: t('report.sent', { n: reached.length }) }));
    box.appendChild(
      h(
        'ul',
        { class: 'alerted' },
        reached.map((d) =>
          h('li', { text: d.team_name + ' · ' + t('tier.short.' + d.tier) + ' · ' + metres(d.distance_m) }),
        ),
      ),
    );
  }
  if (unreached.length) {
    box.appendChild(
      h(
        'ul',
        { class: 'unreached' },
        unreached.map((d) =>
          h('li', {
            dataset: { dispatchId: d.id },
            text: t('report.unreached', {
              team: d.team_name,
              tier: t('tier.short.' + d.tier),
              what: t('dispatch.nobody_alerted'),
            }),
          }),
        ),
      ),
    );
  }
  if (missing.length) box.appendChild(uncoveredLine(missing));
}

// ---------------------------------------------------------------- the incident list

function scheduleRender() {
  if (state.renderQueued) return;
  state.renderQueued = true;
  setTimeout(() => {
    state.renderQueued = false;
    // Signed out meanwhile (an update came just before the session ended): nothing to show.
    if (state.me) renderIncidents();
  }, 30);
}

// A tier past its deadline with nobody of it on scene: what an operator has to act on (call the
// team, record an arrival reported by radio). A tier met late is on record, no longer late.
function isLate(incident) {
  return incident.chain.some((tier) => tier.status === 'breached' && !tier.arrived_at);
}

// `redraw`: every card is built again (a language switch, midnight), not only changed ones.
function renderIncidents(redraw) {
  const list = $('#incidents');
  const focus = focusPlace(list);
  if (redraw) {
    state.cards.clear();
    clear(list);
  }
  const open = Array.from(state.incidents.values()).sort(
    (a, b) => ms(b.reported_at) - ms(a.reported_at),
  );
  // Among thirty open incidents the late ones are far down the list: the heading counts them,
  // and its button shows them alone until pressed again (or none is late any more).
  const late = open.filter(isLate);
  if (!late.length) setLateOnly(false);
  const incidents = state.lateOnly ? late : open;
  $('#incident-count').textContent = t('incidents.count', {
    n: state.lateOnly ? late.length + '/' + open.length : open.length,
  });
  const lateOnly = $('#late-only');
  lateOnly.hidden = !late.length;
  lateOnly.textContent = t('incidents.late', { n: late.length });
  lateOnly.title = t(state.lateOnly ? 'incidents.late_all' : 'incidents.late_hint');
  lateOnly.setAttribute('aria-pressed', String(state.lateOnly));
  const keep = new Set(incidents.map((i) => i.id));
  for (const [id, card] of state.cards) {
    if (!keep.has(id)) {
      card.el.remove();
      state.cards.delete(id);
    }
  }
  // Only changed cards are rebuilt, so scrolling survives live updates; the keyboard's place
  // is put back below.
  let previous = null;
  for (const incident of incidents) {
    const notes = state.notices.get(incident.id);
    const json = JSON.stringify([incident, notes ? Array.from(notes.values()) : []]);
    let card = state.cards.get(incident.id);
    if (!card || card.json !== json) {
      const el = incidentCard(incident);
      if (card) list.replaceChild(el, card.el);
      card = { el, json };
      state.cards.set(incident.id, card);
    }
    const wanted = previous ? previous.nextSibling : list.firstChild;
    if (wanted !== card.el) list.insertBefore(card.el, wanted);
    previous = card.el;
  }
  if (!incidents.length) {
    if (!$('.empty', list)) list.appendChild(h('p', { class: 'empty hint', text: t('incidents.none') }));
  } else {
    const empty = $('.empty', list);
    if (empty) empty.remove();
  }
  restoreFocus(list, focus);
  drawMarkers(open);
  tick();
}

// Where the keyboard is in the list, if it is: the control (or the card) by what it is for, so
// that it can be found again in a card built anew.
function focusPlace(list) {
  const active = document.activeElement;
  if (!active || active === list || !list.contains(active)) return null;
  const card = active.closest('article.incident');
  if (!card) return null;
  const row = active.closest('[data-dispatch-id]');
  const cards = Array.from(list.children).filter((el) => el.dataset.incidentId);
  const at = cards.indexOf(card);
  return {
    el: active,
    incidentId: card.dataset.incidentId,
    dispatchId: row ? row.dataset.dispatchId : null,
    control: active.dataset.control || null,
    // Where to go should the card go (closed, by this operator or another; no longer late
    // under the late-only filter): the card below it, or else the one above.
    near: cards
      .slice(at + 1)
      .concat(cards.slice(0, at).reverse())
      .map((el) => el.dataset.incidentId),
  };
}

// A card rebuilt by a live update (a team accepted, an arrival being recorded) puts the focus
// back on the same control in the new card, or on the card itself when the control is gone
// (the arrival it recorded is in): the next Enter or Tab goes on from where the operator was,
// not from the top of the page. A card gone with the keyboard in it (closed here or at another
// console) hands it to the nearest card left, or to the list's heading when none is.
function restoreFocus(list, place) {
  if (!place || (place.el.isConnected && document.activeElement === place.el)) return;
  const cards = new Map(
    Array.from(list.children)
      .filter((el) => el.dataset.incidentId)
      .map((el) => [el.dataset.incidentId, el]),
  );
  const card = cards.get(place.incidentId);
  if (!card) {
    const near = place.near.map((id) => cards.get(id)).find(Boolean);
    (near || $('#incidents-title')).focus({ preventScroll: true });
    return;
  }
  const same = Array.from(card.querySelectorAll('[data-control]')).find((el) => {
    const row = el.closest('[data-dispatch-id]');
    return el.dataset.control === place.control && (row ? row.dataset.dispatchId : null) === place.dispatchId;
  });
  (same || card).focus({ preventScroll: true });
}

function incidentCard(incident) {
  const breached = incident.chain.some((tier) => tier.status === 'breached');
  return h(
    'article',
    {
      class: 'incident' + (breached ? ' incident-breached' : ''),
      dataset: { incidentId: incident.id },
      'aria-label': t('category.' + incident.category),
      // Not a tab stop; the keyboard is put here when the control it was on is gone.
      tabindex: '-1',
    },
    h(
      'div',
      { class: 'incident-head' },
      h('h3', { text: t('category.' + incident.category) }),
      h('span', {
        class: 'meta',
        text:
          t('incident.reported', { t: clockTime(incident.reported_at) }) +
          ' · ' +
          // Its village first, as the office names places; then where exactly.
          (incident.village_name ? incident.village_name + ' · ' : '') +
          t('incident.coords', {
            lon: coordinate(incident.location.lon),
            lat: coordinate(incident.location.lat),
          }),
      }),
      h(
        'span',
        { class: 'actions' },
        h('button', {
          type: 'button',
          text: t('incident.locate'),
          dataset: { control: 'locate' },
          onClick: () => focusIncident(incident),
        }),
        CAN_REPORT.indexOf(state.me.role) >= 0 && incident.status === 'open'
          ? h('button', {
              type: 'button',
              class: 'add-team',
              dataset: { control: 'add-team' },
              text: t('incident.add_team'),
              onClick: () => openAddTeam(incident),
            })
          : null,
        CAN_REPORT.indexOf(state.me.role) >= 0
          ? h('button', {
              type: 'button',
              class: 'close',
              dataset: { control: 'close' },
              text: t('incident.close'),
              onClick: () => closeIncident(incident),
            })
          : null,
      ),
    ),
    incident.description ? h('p', { class: 'meta description', text: incident.description }) : null,
    h(
      'div',
      { class: 'tiers' },
      incident.chain.map((tier) => tierView(tier, { lateBy: true })),
    ),
    incident.dispatches.length
      ? h('ul', { class: 'dispatches' }, incident.dispatches.map((d) => dispatchItem(incident, d)))
      : h('p', { class: 'uncovered', text: t('incident.no_dispatch') }),
  );
}

function dispatchItem(incident, d) {
  const canRecord =
    incident.status === 'open' && !d.arrived_at && CAN_REPORT.indexOf(state.me.role) >= 0;
  return h(
    'li',
    { class: 'dispatch', dataset: { dispatchId: d.id, tier: String(d.tier) } },
    h(
      'div',
      { class: 'dispatch-head' },
      d.team_name + ' ',
      h('span', { class: 'meta', text: t('tier.short.' + d.tier) + ' · ' + metres(d.distance_m) }),
      d.ring ? ' ' : null,
      d.ring
        ? h('span', {
            class: d.added_by === 'operator' ? 'ring ring-operator' : 'ring',
            text: t(d.added_by === 'operator' ? 'ring.operator' : 'ring.escalated'),
          })
        : null,
      canRecord
        ? h('button', {
            type: 'button',
            class: 'record-arrival',
            text: t('dispatch.arrive'),
            title: t('dispatch.arrive_hint'),
            dataset: { control: 'record-arrival' },
            // Not disabled while the arrival is being recorded: a disabled button cannot hold
            // the keyboard's focus. Pressed again meanwhile, it does nothing.
            'aria-disabled': state.arriving.has(d.id) ? 'true' : null,
            onClick: () => recordArrival(incident, d),
          })
        : null,
    ),
    // Added by hand with a note: what its leader was told (调度员附言), for every operator
    // looking at the card to read as well. Text, never markup; its line breaks kept.
    operatorNoteView(d),
    // No enabled leader account when it was dispatched: nothing on its phones will answer.
    d.nobody_alerted
      ? h('p', { class: 'nobody-alerted', text: t('dispatch.nobody_alerted') })
      : null,
    hopsView(d, (incident.chain.find((tier) => tier.tier === d.tier) || {}).deadline),
    arrivalView(d),
    noticesView(incident.id, d.id),
  );
}

// ---------------------------------------------------------------- 加派 (adding a team by hand)

// The teams in service not yet dispatched to the incident, nearest first: the distance from
// each team's site on the WGS-84 ellipsoid (Karney's geodesic, as the server measures it, and
// to the millimetre as a dispatch records it), so that a team added reads on the card as it
// did in the list.
function teamsToAdd(incident) {
  const sent = new Set(incident.dispatches.map((d) => d.team_id));
  const { lon, lat } = incident.location;
  return state.teams
    .filter((team) => !sent.has(team.id) && !team.retired_at)
    .map((team) => ({ team, d: geodesicMetres(lon, lat, team.location.lon, team.location.lat) }))
    .sort((a, b) => a.d - b.d || a.team.tier - b.team.tier);
}

function geodesicMetres(lon1, lat1, lon2, lat2) {
  return Math.round(Geodesic.WGS84.Inverse(lat1, lon1, lat2, lon2).s12 * 1000) / 1000;
}

function openAddTeam(incident) {
  // leaderless: team id -> whether it has no enabled leader account, once asked (checkLeaders)
  state.adding = { id: incident.id, error: null, busy: false, chosen: null, leaderless: new Map() };
  $('#add-team-note').value = '';
  renderAddTeam();
  const dialog = $('#add-team');
  if (!dialog.open) dialog.showModal();
  $('#add-team-select').focus();
}

function closeAddTeam() {
  state.adding = null;
  const dialog = $('#add-team');
  if (dialog.open) dialog.close();
}

// The dialog as the incident is now (a team dispatched meanwhile drops out of the list) and
// in the page's language; the chosen team and the note stay.
function renderAddTeam() {
  const adding = state.adding;
  if (!adding) return;
  const incident = state.incidents.get(adding.id);
  if (!incident || incident.status !== 'open') {
    closeAddTeam();
    return;
  }
  $('#add-team-title').textContent = t('add.title', {
    incident: t('category.' + incident.category) + ' ' + clockTime(incident.reported_at),
  });
  const select = $('#add-team-select');
  if (select.value) adding.chosen = select.value;
  const options = teamsToAdd(incident);
  clear(select);
  for (const { team, d } of options) {
    let text = t('add.option', { name: team.name, tier: t('tier.short.' + team.tier), d: metres(d) });
    if (adding.leaderless.get(team.id)) text += ' · ' + t('add.no_leader_short');
    select.appendChild(h('option', { value: team.id, text }));
  }
  if (adding.chosen && options.some((o) => o.team.id === adding.chosen)) select.value = adding.chosen;
  if (select.value) checkLeaders(adding, select.value);
  $('#add-team-no-leader').hidden = !adding.leaderless.get(select.value);
  $('#add-team-none').hidden = options.length > 0;
  $('#add-team-submit').disabled = !options.length;
  $('#add-team-submit').setAttribute('aria-busy', adding.busy ? 'true' : 'false');
  const problem = $('#add-team-error');
  problem.hidden = !adding.error;
  problem.textContent = adding.error ? t('add.failed', { detail: errorText(adding.error) }) : '';
}

// Whether the chosen team has an enabled leader account to get its alert: without one the
// dialog says so before the add (the server answers it too: no_active_leader).
async function checkLeaders(adding, teamId) {
  if (adding.leaderless.has(teamId)) return;
  adding.leaderless.set(teamId, false);
  try {
    const found = await api.get('/api/v1/teams/' + encodeURIComponent(teamId) + '/reachability');
    adding.leaderless.set(teamId, !found.leaders.length);
  } catch {
    adding.leaderless.delete(teamId);
    return;
  }
  if (state.adding === adding) renderAddTeam();
}

async function submitAddTeam(event) {
  event.preventDefault();
  const adding = state.adding;
  if (!adding || adding.busy) return;
  const teamId = $('#add-team-select').value;
  if (!teamId) return;
  const note = $('#add-team-note').value.trim();
  adding.busy = true;
  adding.teamId = teamId;
  adding.error = null;
  renderAddTeam();
  try {
    const body = note ? { team_id: teamId, note } : { team_id: teamId };
    const incident = await api.post('/api/v1/incidents/' + adding.id + '/dispatches', body);
    applyIncident(incident, false);
    if (incident.no_active_leader) {
      const d = incident.dispatches.find((one) => one.team_id === teamId);
      // Said once: the board's nobody_alerted may have come first and said it.
      if (!d || !state.unalerted.has(d.id)) {
        if (d) state.unalerted.add(d.id);
        addFeed('add.no_leader_done', { team: d ? d.team_name : '' }, 'feed-breach');
      }
    }
    if (state.adding === adding) closeAddTeam();
  } catch (error) {
    adding.error = error;
  } finally {
    adding.busy = false;
  }
  if (state.adding === adding) renderAddTeam();
}

async function closeIncident(incident) {
  if (!window.confirm(t('incident.close_confirm'))) return;
  try {
    applyIncident(await api.post('/api/v1/incidents/' + incident.id + '/close'), false);
  } catch (error) {
    addFeed('error.generic', { detail: errorText(error) }, 'feed-breach');
  }
}

// A team that reports arrival by radio: the operator records it for them (source operator),
// after saying yes to the team's name.
async function recordArrival(incident, d) {
  if (state.arriving.has(d.id)) return;
  if (!window.confirm(t('dispatch.arrive_confirm', { team: d.team_name }))) return;
  state.arriving.add(d.id);
  redrawCard(incident.id);
  try {
    applyIncident(await api.post('/api/v1/dispatches/' + d.id + '/arrive'), false);
  } catch (error) {
    addFeed(
      'dispatch.arrive_failed',
      { team: d.team_name, detail: errorText(error) },
      'feed-breach',
    );
  } finally {
    state.arriving.delete(d.id);
    redrawCard(incident.id);
  }
}

// A card drawn again although its incident is the same (a button's state changed).
function redrawCard(id) {
  const card = state.cards.get(id);
  if (card) card.json = null;
  scheduleRender();
}

function focusIncident(incident) {
  state.view.map.setView(state.view.toMap(incident.location.lon, incident.location.lat), 17);
}

function drawMarkers(incidents) {
  if (!state.markers) return;
  state.markers.clearLayers();
  for (const incident of incidents) {
    const label = t('category.' + incident.category) + ' ' + clockTime(incident.reported_at);
    state.markers.addLayer(incidentMarker(state.view, incident, label));
  }
}

function tick() {
  if (!state.live) return;
  // At midnight (the server's, Asia/Shanghai) yesterday's times take their date: draw again.
  const day = shanghaiToday();
  if (state.day !== day) {
    const first = state.day === null;
    state.day = day;
    if (!first) {
      renderIncidents(true);
      return;
    }
  }
  tickClocks($('#incidents'), state.live.serverNow());
}

boot();

// ---------------------------------------------------------------- 历史警情 (history)

// The console's list gives way to the incidents of a day, closed ones included, read-only; the
// alarm banner stays above it.
function openHistory() {
  $('#app').hidden = true;
  $('#history').hidden = false;
  const day = $('#history-day');
  if (!day.value) day.value = shanghaiToday();
  loadHistory(false);
  $('#history-title').focus();
}

function closeHistory() {
  if ($('#history').hidden) return;
  $('#history').hidden = true;
  if (state.me) {
    $('#app').hidden = false;
    // The map was hidden: Leaflet measures its box again.
    if (state.view) state.view.map.invalidateSize();
  }
}

async function loadHistory(more) {
  const history = state.history;
  const day = $('#history-day').value;
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) {
    history.error = { text: () => t('history.bad_day') };
    renderHistory();
    return;
  }
  // The next page starts after the last incident listed (its id, `before`), not at a count of
  // the rows: an incident reported after the rows were counted and before the server read the
  // page moved it by one, and the last row of a page came again atop the next. Reports heard
  // live go above that row (historyTake), so it is always the last the server gave.
  const next = more && history.day === day && history.incidents.length > 0;
  const before = next ? history.incidents[history.incidents.length - 1].id : null;
  const asked = (history.asked = {});
  $('#history').dataset.state = 'loading';
  // What the live feed brings while the page is on its way may be newer than the page (an
  // incident of it closed after the server read it): merged into it as it comes.
  const heard = new Map();
  state.hearing.add(heard);
  try {
    // One more than a page is asked for, to know whether another follows: a day of exactly a
    // page (or two) then ends on its last row, not on a 加载更多 that brings nothing.
    let params = 'day=' + day + '&limit=' + (HISTORY_PAGE + 1);
    if (before !== null) params += '&before=' + encodeURIComponent(before);
    const page = await api.get('/api/v1/incidents?' + params);
    if (history.asked !== asked) return;
    history.day = day;
    history.more = page.length > HISTORY_PAGE;
    history.incidents = next ? history.incidents.concat(page.slice(0, HISTORY_PAGE)) : page.slice(0, HISTORY_PAGE);
    history.error = null;
    history.moreError = null;
    for (const snapshot of heard.values()) historyPlace(snapshot);
  } catch (error) {
    if (history.asked !== asked) return;
    // A next page that failed leaves the rows listed where they are; 重试 asks for it again,
    // after the same last row.
    if (next) history.moreError = { text: () => errorText(error) };
    else history.error = { text: () => errorText(error) };
  } finally {
    state.hearing.delete(heard);
  }
  const focused = document.activeElement;
  renderHistory();
  // The button pressed may be gone (the end reached, or the page failed): the focus goes to
  // what took its place rather than to the top of the page.
  if (focused && focused.hidden) {
    const problem = $('#history-problem');
    if (!problem.hidden) $('#history-retry').focus();
    else if (!$('#history-end').hidden) $('#history-end').focus();
  }
}

// A tier of a past incident: its outcome, judged as its record judges it (the stored status is
// what the timer set live, which may lag its deadline), and the time to its first arrival.
function historyTier(tier, incident) {
  if (!tier) return h('td', { text: '—' });
  const now = state.live ? state.live.serverNow() : Date.now();
  const outcome = tierOutcome(tier, incident.closed_at, now);
  const parts = [t('rep.outcome.' + outcome)];
  if (tier.elapsed_s !== null) parts.push(againstTarget(tier.elapsed_s, tier.target_s));
  else if (outcome === 'breached') parts.push(t('rep.reason.breached'));
  if (!tier.covered) parts.push(t('tier.uncovered'));
  return h('td', { dataset: { tier: String(tier.tier), outcome }, text: parts.join(' · ') });
}

// Newest first, as the server lists a day: by report time, then by id.
function listedBefore(a, b) {
  const at = micros(a.reported_at);
  const bt = micros(b.reported_at);
  return at > bt || (at === bt && a.id > b.id);
}

// The day shown follows what the console hears of its incidents (a report, a breach, an arrival,
// a close), in place: the rows loaded stay, what the operator scrolled to stays in view, and the
// list is not asked for again. One older than the last row loaded, while more are left to load,
// comes with 更多 instead.
function historyTake(snapshot) {
  // The record open below the list is the server's reading of the incident: read again.
  historyRecord.refresh(snapshot.id);
  const incident = historyPlace(snapshot);
  if (!incident) return;
  const body = $('#history-list tbody');
  if ($('#history').hidden || !body) {
    renderHistory();
    return;
  }
  renderHistoryCount();
  const row = historyRow(incident);
  const old = body.querySelector('tr[data-incident-id="' + incident.id + '"]');
  if (old) {
    const focused = old.contains(document.activeElement);
    old.replaceWith(row);
    if (focused) row.querySelector('button').focus();
  } else {
    body.insertBefore(row, body.children[state.history.incidents.indexOf(incident)] || null);
  }
}

// The snapshot in the day's list: merged into its row, or a new row in its place; the incident
// as listed, or null when it is not (another day, or older than the rows loaded while more are
// left to load).
function historyPlace(snapshot) {
  const history = state.history;
  if (!history.day || history.error || !snapshot.reported_at) return null;
  if (localTime(snapshot.reported_at).slice(0, 10) !== history.day) return null;
  const incidents = history.incidents;
  const at = incidents.findIndex((one) => one.id === snapshot.id);
  if (at >= 0) return (incidents[at] = mergeIncident(incidents[at], snapshot));
  const place = incidents.findIndex((one) => listedBefore(snapshot, one));
  if (place < 0 && history.more) return null;
  incidents.splice(place < 0 ? incidents.length : place, 0, snapshot);
  return snapshot;
}

function renderHistoryCount() {
  const history = state.history;
  const n = history.incidents.length;
  $('#history-count').textContent = t(history.more ? 'history.count_more' : 'history.count', { n });
  // The day listed whole is said below its last row, so that the end of the list reads as one.
  const end = $('#history-end');
  end.hidden = !!history.error || history.more || !n;
  end.textContent = end.hidden ? '' : t('history.end', { n });
}

function renderHistory() {
  const history = state.history;
  const box = $('#history');
  if (box.hidden) return;
  const failed = history.error || history.moreError;
  box.dataset.state = failed ? 'failed' : 'ready';
  const list = clear($('#history-list'));
  const problem = $('#history-problem');
  problem.hidden = !failed;
  $('#history-problem-text').textContent = failed
    ? t(history.error ? 'history.failed' : 'history.more_failed', { reason: failed.text() })
    : '';
  if (history.error) {
    $('#history-count').textContent = '';
    $('#history-end').hidden = true;
    $('#history-more').hidden = true;
    return;
  }
  const incidents = history.incidents;
  renderHistoryCount();
  $('#history-more').hidden = !history.more || !!history.moreError;
  if (!incidents.length) {
    list.appendChild(h('p', { class: 'hint', text: t('history.none') }));
    return;
  }
  const head = h(
    'tr',
    null,
    ['history.reported', 'report.category', 'history.place', 'history.status', 'tier.short.1', 'tier.short.2', 'tier.short.3', 'history.record'].map(
      (key) => h('th', { text: t(key) }),
    ),
  );
  list.appendChild(
    h('table', { class: 'history-table' }, h('thead', null, head), h('tbody', null, incidents.map(historyRow))),
  );
}

function historyRow(incident) {
  const tiers = {};
  for (const tier of incident.chain) tiers[tier.tier] = tier;
  return h(
    'tr',
    { dataset: { incidentId: incident.id, status: incident.status } },
    h('td', { text: localTime(incident.reported_at) }),
    h('td', { text: t('category.' + incident.category) }),
    h('td', {
      // Named by the incident itself: the villages' list, boundaries and all, is not fetched.
      text: placeText(incident.village_name, incident.location.lon, incident.location.lat),
    }),
    h('td', {
      text: incident.closed_at
        ? t('rep.record_closed', { t: localTime(incident.closed_at) })
        : t('rep.record_open_now'),
    }),
    historyTier(tiers[1], incident),
    historyTier(tiers[2], incident),
    historyTier(tiers[3], incident),
    h(
      'td',
      null,
      h('button', {
        type: 'button',
        text: t('history.open_record'),
        dataset: { control: 'record' },
        'aria-label': t('history.open_record') + ' ' + t('category.' + incident.category) + ' ' + localTime(incident.reported_at),
        onClick: () => historyRecord.open(incident.id),
      }),
    ),
  );
}

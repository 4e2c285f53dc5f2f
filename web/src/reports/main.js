// The response-time report: the API's figures with charts (Chart.js), filters and downloads.
import '../shared/base.css';
import './reports.css';

import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  Tooltip,
} from 'chart.js';
import { toFont } from 'chart.js/helpers';
import annotationPlugin from 'chartjs-plugin-annotation';

import { Api, ApiError } from '../shared/api.js';
import { errorFromReply, errorText, isNetworkError } from '../shared/errors.js';
import { officeRefusal, signInGate } from '../shared/login.js';
import { $, clear, h } from '../shared/dom.js';
import { announce } from '../shared/announce.js';
import { applyLang, currentLang, onLangChange, setLang, t } from '../shared/i18n.js';
import { duration, secondsAgainst } from '../shared/format.js';
import { placeText, recordBox } from '../shared/record.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip, Legend, annotationPlugin);

const CAN_VIEW = ['operator', 'admin', 'auditor'];
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
const GROUPINGS = ['tier', 'team', 'village', 'day', 'week', 'month'];
const SEGMENTS = [
  ['alert_to_delivery', 'rep.a2d'],
  ['delivery_to_acceptance', 'rep.d2acc'],
  ['acceptance_to_arrival', 'rep.acc2arr'],
];
const COUNTS = ['incidents', 'with_arrival', 'without_arrival', 'met', 'breached', 'cancelled', 'pending', 'uncovered'];
const COLORS = { met: '#047857', breach: '#b91c1c', between: '#b45309', bar: '#1d4ed8', line: '#b91c1c' };
// The histogram's heading, of the tier it counts (the page's own words: the shared strings
// name tier 1's only).
const HISTOGRAM_TITLES = {
  zh: (tier) => ({ 1: '一梯队', 2: '二梯队', 3: '三梯队' })[tier] + '到场用时分布',
  en: (tier) => 'Tier-' + tier + ' times to arrival',
};
// Said when a row's measurements were judged by different targets (changed within the period).
const MIXED_TARGETS = {
  zh: '期间调整过时限，每起警情按其当时的时限判定',
  en: 'The target changed within the period; each incident is judged by the one it was reported under',
};
const DAY_MS = 86400000;
const SHANGHAI_MS = 8 * 3600000;
// The dates a report may be asked for. A date field takes years of five digits and more (a key
// held down types 20255), and a last day of 9999-12-31 would ask up to 10000-01-01, which no
// server date can be: such a date is named, not sent.
const EARLIEST_DATE = '2000-01-01';
const LATEST_DATE = '2099-12-31';

// The console's login: one token for both pages.
const api = new Api('dispatch.console.token');
// The record of one incident (GET /api/v1/reports/incidents/{id}), read-only, an exclusion's id
// opens: its tiers' outcomes, and per team alerted its outcome and hops with the server's times.
const record = recordBox(api, $('#record'), $('#record-title'), $('#record-body'));

const state = {
  me: null,
  teams: [],
  teamParts: {}, // each team's label parts (teamLabelParts), by id
  teamLabels: [], // [id, label] of each team, in the page's language, in the filter's order
  teamIndex: [], // {id, label, key} of each team, key its label as the search compares it
  teamMatches: { typed: '', found: [] }, // the teams found for the text typed last
  teamListed: null, // the ids of the teams the team filter lists, as one string
  villages: [],
  report: null,
  histogram: null,
  params: null,
  charts: [],
  running: 0,
  failure: null, // the error when the last request failed: said in the language of the moment
  downloadFailure: null, // ... when the last download failed, until the next report or download
  verification: null, // the last answer of GET /api/v1/audit/verification
  verifyFailure: null, // ... or why it did not come
  verifying: 0, // the verification asked for last, counted: an older answer is not shown
};

function boot() {
  applyLang();
  $('#lang').addEventListener('click', () => setLang(currentLang() === 'zh' ? 'en' : 'zh'));
  $('#filters').addEventListener('submit', (event) => {
    event.preventDefault();
    keepFilters();
    run();
  });
  for (const [id, part, format] of [
    ['#dl-csv', 'figures', 'csv'],
    ['#dl-exclusions', 'exclusions', 'csv'],
    ['#dl-xlsx', 'figures', 'xlsx'],
  ]) {
    $(id).addEventListener('click', (event) => {
      event.preventDefault();
      download(event.currentTarget.getAttribute('href'), part, format);
    });
    $(id).dataset.part = part;
    $(id).dataset.format = format;
  }
  $('#team-find').addEventListener('input', () => sayTeamCount(fillTeams()));
  onLangChange(() => {
    fillSelects();
    render();
    record.render();
    renderVerification();
  });
  $('#record-close').addEventListener('click', record.close);
  $('#verify-run').addEventListener('click', verifyRecord);
  // Back or forward to another report asked for: its filters, and its figures asked again.
  window.addEventListener('popstate', () => {
    if (!state.me) return;
    restoreFilters();
    run();
  });
  signOut = signInGate(api, {
    admit: (me) =>
      CAN_VIEW.indexOf(me.role) < 0 ? () => officeRefusal(me.role) : null,
    enter: start,
    leave: () => {
      // Whoever signs in next on this page sees nothing of the one who signed out: not the
      // record he had open, nor his report (an answer still on its way is not shown).
      state.me = null;
      state.running += 1;
      record.close();
      state.report = null;
      state.histogram = null;
      state.failure = null;
      state.downloadFailure = null;
      state.verifying += 1;
      $('#verify-run').disabled = false;
      state.verification = null;
      state.verifyFailure = null;
      $('#status').textContent = '';
      $('#status').className = 'status';
      render();
      renderVerification();
    },
  });
}

// Signs out and shows the login, saying `message` (a function giving the text) under the form;
// set once the page has booted.
let signOut = () => {};

async function start(me) {
  state.me = me;
  try {
    // Retired teams too: the report still covers their past dispatches. The village filter
    // needs names only: not the boundaries, megabytes for a city's villages.
    const [teams, villages] = await Promise.all([everyTeam(), api.get('/api/v1/villages/names')]);
    // Teams in service first, then the retired ones; each part by tier, then name, and
    // retired namesakes as they were retired.
    state.teams = teams
      .slice()
      .sort(
        (a, b) =>
          Number(a.retired_at !== null) - Number(b.retired_at !== null) ||
          a.tier - b.tier ||
          a.name.localeCompare(b.name, 'zh') ||
          (Date.parse(a.retired_at) || 0) - (Date.parse(b.retired_at) || 0) ||
          (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
      );
    state.teamParts = teamLabelParts(state.teams);
    state.villages = villages;
  } catch (_) {
    // The filters then offer "all" only; the report itself still runs.
  }
  // The period left empty, the server picks its default (its last 30 days, today included)
  // and the inputs show it: "today" is the server's day, not this computer's, whose clock may
  // be days off. Filters kept in the address (keepFilters) are asked for instead.
  fillSelects();
  restoreFilters();
  run();
}

// How many teams are asked for at a time: a city has tens of thousands, megabytes in one
// answer; the server gives at most 2000.
const TEAM_PAGE = 1000;

// Every team, retired ones after those in service, a page at a time, each after the last team
// of the one before (after=<id>; after_retired once the pages reached the retired): teams
// retired or added between two pages skip and repeat none. One retired after its page was
// read comes again among the retired: it is kept once.
async function everyTeam() {
  const teams = [];
  const seen = new Set();
  let cursor = '';
  for (;;) {
    const page = await api.get('/api/v1/teams?include_retired=true&limit=' + TEAM_PAGE + cursor);
    for (const team of page) {
      if (!seen.has(team.id)) teams.push(team);
      seen.add(team.id);
    }
    if (page.length < TEAM_PAGE) return teams;
    const last = page[page.length - 1];
    cursor = '&after=' + encodeURIComponent(last.id) + (last.retired_at ? '&after_retired=true' : '');
  }
}

// ---------------------------------------------------------------- filters

// The filters as the form shows them, by their name in the page's address: a reload, the
// address shared or saved, and the browser's back and forward show the same report, not the
// default period again. team_search is the text typed in 查找联防队: it filters nothing, but the
// team filter opens listing what it listed.
const KEPT = [
  ['from', '#from'],
  ['to', '#to'],
  ['tier', '#tier'],
  ['team_search', '#team-find'],
  ['team_id', '#team'],
  ['village_id', '#village'],
  ['category', '#category'],
  ['group_by', '#group-by'],
];

// Only filters asked for with 查询 are kept: the page opened bare stays on the server's default.
// Each report asked for is a step of the browser's history (back shows the one before), the
// same one asked again is not.
function keepFilters() {
  const kept = new URLSearchParams();
  for (const [name, id] of KEPT) if ($(id).value) kept.set(name, $(id).value);
  const address = window.location.pathname + '?' + kept.toString();
  if (address === window.location.pathname + window.location.search) return;
  window.history.pushState(null, '', address);
}

// The form as the address has it; a filter it does not name is left at its default (the
// server's period, all), as when the page was opened bare.
function restoreFilters() {
  const kept = new URLSearchParams(window.location.search);
  for (const [name, id] of KEPT) {
    const value = kept.get(name) || '';
    const field = $(id);
    if (id === '#team') {
      // Listed for the search text, the team among them wherever that text puts it.
      fillTeams(value);
      continue;
    }
    field.value = value;
    // A select given a value it does not offer (a team since removed) shows none: its first
    // then, "all", or for 分组方式 (which offers no "") 按梯队, the server's default.
    if (field.tagName === 'SELECT' && (field.value !== value || field.selectedIndex < 0)) {
      field.selectedIndex = 0;
    }
  }
}

function option(value, text) {
  return h('option', { value, text });
}

function fillSelect(select, options) {
  const chosen = select.value;
  clear(select);
  for (const [value, text] of options) select.appendChild(option(value, text));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
}

function fillSelects() {
  const all = ['', t('rep.all')];
  fillSelect($('#tier'), [all, ...[1, 2, 3].map((n) => [String(n), t('tier.' + n)])]);
  state.teamLabels = state.teams.map((team) => [team.id, teamLabel(state.teamParts[team.id], team.id, team.name)]);
  indexTeams();
  fillTeams();
  fillSelect($('#village'), [all, ...state.villages.map((v) => [v.id, v.name])]);
  fillSelect($('#category'), [all, ...CATEGORIES.map((c) => [c, t('category.' + c)])]);
  fillSelect(
    $('#group-by'),
    GROUPINGS.map((g) => [g, t('rep.by.' + g)]),
  );
}

// The team filter offers the teams whose label (as shown, in the page's language) holds the
// text typed in 查找联防队, any case, full-width or half-width alike: a city's tens of
// thousands cannot be scrolled through. At most TEAMS_LISTED are listed, in the list's order,
// and the line under the field says how many more there are, to be found by typing on: a
// list of thousands took a third of a second to lay out at each keystroke. The team chosen
// stays offered whatever the text, so typing never changes what is filtered by.
const TEAMS_LISTED = 100;
// How long the typing pauses before the count is said to a screen reader: once, not at every
// keystroke (the line on screen follows each one).
const TEAM_COUNT_PAUSE_MS = 700;

// Text as the search compares it: NFKC (a full-width ０１２ typed with a Chinese input method
// is 012), lower case.
function searchKey(text) {
  return text.normalize('NFKC').toLocaleLowerCase();
}

// Each team's label and its search key, made once per language (fillSelects), not per keystroke.
function indexTeams() {
  state.teamIndex = state.teamLabels.map(([id, label]) => ({ id, label, key: searchKey(label) }));
  state.teamMatches = { typed: '', found: state.teamIndex };
  state.teamListed = null;
}

// The teams whose key holds `typed`: looked for among those found for the text before when the
// new text goes on from it (typing on), else among all.
function teamsFound(typed) {
  const before = state.teamMatches;
  const among = before.typed && typed.startsWith(before.typed) ? before.found : state.teamIndex;
  const found = typed ? among.filter((team) => team.key.includes(typed)) : state.teamIndex;
  state.teamMatches = { typed, found };
  return found;
}

function fillTeams(chosen) {
  const select = $('#team');
  if (typeof chosen !== 'string') chosen = select.value;
  const typed = searchKey($('#team-find').value.trim());
  const found = teamsFound(typed);
  const listed = found.slice(0, TEAMS_LISTED);
  // The team chosen, in its place in the list's order, when not among those listed.
  if (chosen && !listed.some((team) => team.id === chosen)) {
    const at = state.teamIndex.findIndex((team) => team.id === chosen);
    if (at >= 0) {
      const team = state.teamIndex[at];
      const after = listed.findIndex((other) => state.teamIndex.indexOf(other) > at);
      listed.splice(after < 0 ? listed.length : after, 0, team);
    }
  }
  // The same options as already listed (text typed on among a few teams): left as they are.
  const ids = listed.map((team) => team.id).join('\n');
  if (state.teamListed !== ids || select.options.length === 0) {
    const options = document.createDocumentFragment();
    options.appendChild(option('', t('rep.all')));
    for (const team of listed) options.appendChild(option(team.id, team.label));
    clear(select);
    select.appendChild(options);
    state.teamListed = ids;
  }
  select.value = chosen;
  if (select.value !== chosen) select.selectedIndex = 0;
  const more = found.length - Math.min(found.length, TEAMS_LISTED);
  let line = '';
  if (typed && more) line = t('rep.team_found_more', { n: found.length, shown: TEAMS_LISTED, more });
  else if (typed) line = t(found.length === 1 ? 'rep.team_found_one' : 'rep.team_found', { n: found.length });
  else if (more) line = t('rep.team_listed', { shown: TEAMS_LISTED, more });
  $('#team-found').textContent = line;
  return typed ? line : '';
}

// The count said once the typing pauses, and only when it says something new.
let teamCountTimer = null;
let teamCountSaid = '';

function sayTeamCount(line) {
  clearTimeout(teamCountTimer);
  if (!line) {
    teamCountSaid = '';
    return;
  }
  teamCountTimer = setTimeout(() => {
    if (line === teamCountSaid) return;
    teamCountSaid = line;
    announce($('#team-said'), line);
  }, TEAM_COUNT_PAUSE_MS);
}

// Each team's label parts as the report gives them (`team` in its groups by team): a retired
// team is marked retired, and told apart from a retired namesake by the day it was retired
// (Beijing time), and by its id when that day was the namesake's too; so that two retired
// 甲联防队 are two options that say which is which. The same rule as the server's
// (reports.service.team_label_parts), over every team, as the server weighs every namesake.
function teamLabelParts(teams) {
  const parts = {};
  for (const team of teams) {
    parts[team.id] = {
      name: team.name,
      retired_on: team.retired_at ? shanghaiDate(Date.parse(team.retired_at)) : null,
      told_apart_by: null,
    };
  }
  for (const by of ['day', 'id']) {
    const labels = {};
    const holders = {};
    for (const id of Object.keys(parts)) {
      // What the label says, as a key: two teams share one exactly when their labels read the same.
      const p = parts[id];
      const day = p.told_apart_by ? p.retired_on : '';
      labels[id] = [p.name, p.retired_on !== null, day, p.told_apart_by === 'id' ? id : ''].join('\n');
      holders[labels[id]] = (holders[labels[id]] || 0) + 1;
    }
    for (const id of Object.keys(parts)) {
      if (parts[id].retired_on !== null && holders[labels[id]] > 1) parts[id].told_apart_by = by;
    }
  }
  return parts;
}

// A team as the report labels it (the groups by team, the exclusions), said in the page's
// language from the label's parts: its name, retired, and told apart from a retired namesake
// by the day it was retired (and its id). The server's `label` is Chinese, for the exports.
function teamLabel(parts, id, label) {
  if (!parts) return label || '';
  const name = parts.name;
  if (!parts.retired_on) return name;
  if (!parts.told_apart_by) return t('rep.team_retired', { name });
  const day = parts.retired_on;
  if (parts.told_apart_by === 'day') return t('rep.team_retired_on', { name, day });
  return t('rep.team_retired_on_id', { name, day, id });
}

// A week by its Monday (the group's key, YYYY-MM-DD): its ISO week and that Monday,
// 2026-W50（2026-12-07起）, or 2026-W50 (from 2026-12-07); null for a key that is no date.
function weekLabel(monday) {
  const at = /^\d{4}-\d\d-\d\d$/.test(monday) ? Date.parse(monday + 'T00:00:00Z') : NaN;
  if (!Number.isFinite(at)) return null;
  // The ISO week's year is its Thursday's; its number counts the Thursdays of that year.
  const thursday = at + 3 * DAY_MS;
  const year = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) + 1;
  return t('rep.week', { year, week: (week < 10 ? '0' : '') + week, monday });
}

// A date left empty shows the server's choice, and the filters (the histogram's and the
// downloads') carry it: the report's end is excluded, the last day shown the one before it.
function showPeriod(report, filters) {
  if (!filters.has('from') && report.period_from) {
    $('#from').value = shanghaiDate(Date.parse(report.period_from));
    filters.set('from', $('#from').value);
  }
  if (!filters.has('to') && report.period_to) {
    const end = shanghaiDate(Date.parse(report.period_to));
    $('#to').value = addDays(end, -1);
    filters.set('to', end);
  }
}

function shanghaiDate(ms) {
  return new Date(ms + SHANGHAI_MS).toISOString().slice(0, 10);
}

function addDays(date, days) {
  return new Date(Date.parse(date + 'T00:00:00Z') + days * DAY_MS).toISOString().slice(0, 10);
}

// The API reads a bare date as Asia/Shanghai midnight and its end as excluded: the last day
// picked is included by asking up to the next midnight.
function filterParams() {
  const params = new URLSearchParams();
  if ($('#from').value) params.set('from', $('#from').value);
  if ($('#to').value) params.set('to', addDays($('#to').value, 1));
  for (const [name, id] of [
    ['tier', '#tier'],
    ['team_id', '#team'],
    ['village_id', '#village'],
    ['category', '#category'],
  ]) {
    if ($(id).value) params.set(name, $(id).value);
  }
  return params;
}

function reportParams(filters, grouping) {
  const params = new URLSearchParams(filters);
  // The chosen grouping first; tier and team always, for the charts.
  for (const by of [grouping, 'tier', 'team'].filter((g, i, list) => list.indexOf(g) === i)) {
    params.append('group_by', by);
  }
  return params;
}

// The histogram of the tier filtered by, or, filtered by team, of the team's own tier (the
// server picks it, as for the workbook's histogram); else tier 1.
function histogramParams(filters) {
  return new URLSearchParams(filters);
}

// A date the page cannot ask for, named before anything is sent.
class DatesRefused extends Error {
  constructor(problems) {
    super('dates');
    this.problems = problems; // [{field: 'from'|'to', reason: 'invalid'|'range'}]
  }
}

function dateProblems() {
  const problems = [];
  for (const field of ['from', 'to']) {
    const text = $('#' + field).value;
    if (!text) continue; // the server picks the period
    const match = /^(\d+)-(\d\d)-(\d\d)$/.exec(text);
    const [year, month, day] = match ? match.slice(1).map(Number) : [];
    const at = new Date(Date.UTC(year, month - 1, day));
    const real = !!match && at.getUTCMonth() === month - 1 && at.getUTCDate() === day;
    if (match && match[1].length !== 4) problems.push({ field, reason: 'range' });
    else if (!real) problems.push({ field, reason: 'invalid' });
    else if (text < EARLIEST_DATE || text > LATEST_DATE) problems.push({ field, reason: 'range' });
  }
  for (const field of ['from', 'to']) {
    if (problems.some((p) => p.field === field)) $('#' + field).setAttribute('aria-invalid', 'true');
    else $('#' + field).removeAttribute('aria-invalid');
  }
  return problems;
}

function datesText(problems) {
  return problems
    .map((p) =>
      t('rep.date.' + p.reason, { field: t('field.' + p.field), min: EARLIEST_DATE, max: LATEST_DATE }),
    )
    .join(t('error.sep'));
}

async function run() {
  const ticket = ++state.running;
  state.downloadFailure = null;
  $('#app').dataset.state = 'loading';
  $('#status').textContent = t('rep.loading');
  $('#status').className = 'status';
  $('#run').disabled = true;
  // The figures on screen are the previous filters' until the answer comes: shown as such.
  $('#result').classList.add('result-stale');
  $('#result').setAttribute('aria-busy', 'true');
  try {
    const problems = dateProblems();
    if (problems.length) {
      $('#' + problems[0].field).focus();
      throw new DatesRefused(problems);
    }
    const filters = filterParams();
    const grouping = $('#group-by').value || 'tier';
    const params = reportParams(filters, grouping);
    const chosen = filters.has('from') && filters.has('to');
    const reportAsked = api.get('/api/v1/reports/response-times?' + params.toString());
    // A period the server picks is asked for first, and the histogram for the same one: two
    // requests each left to pick could fall on either side of midnight.
    if (!chosen) {
      const picked = await reportAsked;
      if (ticket !== state.running) return;
      showPeriod(picked, filters);
    }
    const [report, histogram] = await Promise.all([
      reportAsked,
      api.get('/api/v1/reports/arrival-histogram?' + histogramParams(filters).toString()),
    ]);
    if (ticket !== state.running) return;
    state.report = report;
    state.histogram = histogram;
    state.params = { filters, grouping, query: reportParams(filters, grouping).toString() };
    state.failure = null;
    render();
    $('#app').dataset.state = 'ready';
  } catch (error) {
    if (ticket !== state.running) return;
    // Figures left under the error would read as the new period's: they go.
    state.report = null;
    state.histogram = null;
    state.params = null;
    state.failure = error;
    render();
    $('#app').dataset.state = 'failed';
  } finally {
    if (ticket === state.running) $('#run').disabled = false;
  }
}

// ---------------------------------------------------------------- formatting

// A time with its units, "42.3 秒" below a minute and "3 分 07.3 秒" from one on, to 0.1 s;
// "—" where there is none (a tier no team reached). Rounded up, but down when on or under
// `target` (a time to arrival judged by it): a time never reads on the wrong side of its
// target, and a tier met at 59.96 s reads 59.9 秒 as the console's 59 秒, not 1 分 00.0 秒
// (shared/format.js).
function sec(value, target) {
  const shown = secondsAgainst(value, target === undefined ? null : target);
  return shown === '—' ? shown : duration(shown);
}

// The target a row's times to arrival are judged by: the lowest, when the row was judged by
// several (a time under it is under each).
function lowestTarget(f) {
  return f.target_s !== null ? f.target_s : f.targets_s.length ? Math.min.apply(null, f.targets_s) : null;
}

function share(value) {
  return value === null || value === undefined ? '—' : percent(value * 100);
}

// A percentage to 0.1 %, never rounded onto its ends: 2999 met of 3000 reads 99.9%, not 100.0%
// as if none had missed, and 1 of 3000 reads 0.1%, not 0.0% as if none had met.
function percent(value) {
  let text = value.toFixed(1);
  if (text === '100.0' && value < 100) text = '99.9';
  else if (text === '0.0' && value > 0) text = '0.1';
  return text + '%';
}

// Times come as ISO 8601 with +08:00: show the wall-clock time as sent.
function localTime(iso) {
  return iso ? iso.slice(0, 19).replace('T', ' ') : '';
}

function cell(field, value, text) {
  return h('td', {
    dataset: { field, value: value === null || value === undefined ? '' : String(value) },
    text,
  });
}

function statCells(prefix, stat, target) {
  return [
    cell(prefix + '.p50', stat.p50_s, sec(stat.p50_s, target)),
    cell(prefix + '.p90', stat.p90_s, sec(stat.p90_s, target)),
    cell(prefix + '.max', stat.max_s, sec(stat.max_s, target)),
  ];
}

function table(head, rows, className) {
  return h(
    'table',
    { class: 'figures ' + (className || '') },
    h('thead', null, head),
    h('tbody', null, rows),
  );
}

// ---------------------------------------------------------------- rendering

function render() {
  const report = state.report;
  $('#result').classList.remove('result-stale');
  $('#result').removeAttribute('aria-busy');
  if (!report) {
    clearResult();
    if (state.failure !== null) {
      const failure = state.failure;
      const detail = failure instanceof DatesRefused ? datesText(failure.problems) : errorText(failure);
      $('#status').textContent = t('rep.failed', { detail, advice: t(failureAdvice(failure)) });
      $('#status').className = 'status error';
    }
    return;
  }
  $('#result').hidden = false;
  showDone();
  $('#period').textContent = t('rep.period', {
    from: localTime(report.period_from).slice(0, 16),
    to: localTime(report.period_to).slice(0, 16),
  });
  setDownloads();
  renderTotals(report);
  const by = Object.fromEntries(report.groupings.map((g) => [g.by, g]));
  renderGrouping(by[state.params.grouping]);
  renderExclusions(report);
  $('#method').textContent = t('rep.method_text');
  renderReportHead();
  for (const chart of state.charts) chart.destroy();
  state.charts = [tierChart(report.totals), teamChart(by.team), histogramChart(state.histogram)];
}

// The filters are worth changing only when the server refused them; when it could not answer
// (out of reach, restarting, busy), the same filters are to be shown again shortly.
function failureAdvice(error) {
  if (error instanceof DatesRefused) return 'rep.failed_cleared';
  const status = error instanceof ApiError ? error.status : 0;
  if (isNetworkError(error) || status >= 500 || status === 429) return 'rep.failed_cleared_retry';
  return 'rep.failed_cleared';
}

function clearResult() {
  $('#report-head').textContent = '';
  for (const chart of state.charts) chart.destroy();
  state.charts = [];
  $('#result').hidden = true;
  for (const id of ['#totals', '#grouping', '#exclusions', '#data-tiers', '#data-teams', '#data-histogram']) {
    clear($(id));
  }
  for (const id of ['#period', '#exclusion-count', '#grouping-title']) $(id).textContent = '';
  for (const id of ['#dl-csv', '#dl-exclusions', '#dl-xlsx']) $(id).setAttribute('href', '#');
}

function setDownloads() {
  const base = '/api/v1/reports/response-times?';
  const figures = new URLSearchParams(state.params.query);
  figures.set('format', 'csv');
  $('#dl-csv').setAttribute('href', base + figures.toString());
  const excluded = new URLSearchParams(state.params.query);
  excluded.set('format', 'csv');
  excluded.set('part', 'exclusions');
  $('#dl-exclusions').setAttribute('href', base + excluded.toString());
  // The workbook carries every grouping asked for, plus tier and team with its charts.
  const workbook = new URLSearchParams(state.params.filters);
  workbook.append('group_by', state.params.grouping);
  workbook.set('format', 'xlsx');
  $('#dl-xlsx').setAttribute('href', base + workbook.toString());
}

function figureHead(first) {
  return h(
    'tr',
    null,
    first.map((key) => h('th', { text: t(key) })),
    h('th', { text: t('rep.target') }),
    COUNTS.map((key) => h('th', { text: t('rep.' + key) })),
    h('th', { text: t('rep.share') }),
    h('th', { text: t('rep.arrival') + ' ' + t('rep.p50') }),
    h('th', { text: t('rep.arrival') + ' ' + t('rep.p90') }),
    h('th', { text: t('rep.arrival') + ' ' + t('rep.max') }),
    SEGMENTS.map(([, key]) => h('th', { text: t(key) + ' P50 / P90 / ' + t('rep.max') })),
  );
}

// The target the row was judged by (stored with each incident), or all of them when it changed.
function targetCell(f) {
  if (f.target_s !== null) return cell('target_s', f.target_s, t('unit.s', { n: f.target_s }));
  const mixed = f.targets_s.join('/');
  const td = cell('target_s', mixed, t('unit.s', { n: mixed }) + ' *');
  td.title = MIXED_TARGETS[currentLang()] || MIXED_TARGETS.en;
  td.dataset.mixed = 'true';
  return td;
}

function figureCells(f) {
  return [
    targetCell(f),
    COUNTS.map((key) => cell(key, f[key], String(f[key]))),
    cell('share_within_target', f.share_within_target, share(f.share_within_target)),
    statCells('time_to_arrival', f.time_to_arrival, lowestTarget(f)),
    SEGMENTS.map(([key]) => {
      const s = f[key];
      return cell(
        key + '.p90',
        s.p90_s,
        sec(s.p50_s) + ' / ' + sec(s.p90_s) + ' / ' + sec(s.max_s),
      );
    }),
  ];
}

function renderTotals(report) {
  const box = clear($('#totals'));
  if (!report.totals.length) {
    box.appendChild(h('p', { class: 'hint', text: t('rep.none') }));
    return;
  }
  box.appendChild(
    h(
      'div',
      { class: 'tier-cards' },
      report.totals.map((f) =>
        h(
          'div',
          { class: 'tier-card', dataset: { tier: String(f.tier) } },
          h('div', { class: 'tier-card-name', text: t('tier.' + f.tier) }),
          h('div', { class: 'tier-card-share', dataset: { field: 'share_within_target' }, text: share(f.share_within_target) }),
          h('div', {
            class: 'tier-card-line',
            text: t('rep.met') + ' ' + f.met + ' · ' + t('rep.breached') + ' ' + f.breached,
          }),
          h('div', {
            class: 'tier-card-line',
            text: [
              [t('rep.p50'), f.time_to_arrival.p50_s],
              [t('rep.p90'), f.time_to_arrival.p90_s],
              [t('rep.max'), f.time_to_arrival.max_s],
            ]
              .map(([name, value]) => name + ' ' + sec(value, lowestTarget(f)))
              .join(' · '),
          }),
        ),
      ),
    ),
  );
  const wrap = h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': 'totals-title' });
  wrap.appendChild(
    table(
      figureHead(['rep.tier']),
      report.totals.map((f) =>
        h('tr', { dataset: { tier: String(f.tier) } }, h('th', { text: t('tier.' + f.tier) }), figureCells(f)),
      ),
      'totals-table',
    ),
  );
  box.appendChild(wrap);
}

function groupLabel(grouping, group) {
  if (grouping.by === 'tier') return t('tier.' + group.key);
  if (grouping.by === 'village' && !group.key) return t('rep.no_village');
  if (grouping.by === 'team') return teamLabel(group.team, group.key, group.label);
  if (grouping.by === 'week') return weekLabel(group.key) || group.label;
  return group.label;
}

function renderGrouping(grouping) {
  $('#grouping-title').textContent = t('rep.by.' + state.params.grouping);
  const box = clear($('#grouping'));
  if (!grouping) return;
  box.dataset.by = grouping.by;
  box.appendChild(h('p', { class: 'hint', text: t('rep.unit.' + grouping.unit) }));
  const rows = [];
  for (const group of grouping.groups) {
    for (const f of group.tiers) {
      rows.push(
        h(
          'tr',
          { dataset: { key: group.key, tier: String(f.tier) } },
          h(
            'th',
            null,
            groupLabel(grouping, group),
            // Per team: how many of its dispatches were added by hand after the tier's
            // deadline, each judged from its own alert.
            f.judged_from_alert
              ? h('span', { class: 'from-alert', text: t('rep.from_alert_count', { n: f.judged_from_alert }) })
              : null,
          ),
          h('td', { text: t('tier.short.' + f.tier) }),
          figureCells(f),
        ),
      );
    }
  }
  if (!rows.length) {
    box.appendChild(h('p', { class: 'hint', text: t('rep.none') }));
    return;
  }
  box.appendChild(table(figureHead(['rep.group', 'rep.tier']), rows, 'grouping-table'));
}

function renderExclusions(report) {
  const listed = report.exclusions.length;
  $('#exclusion-count').textContent = report.exclusions_truncated
    ? t('rep.exclusion_count_cut', { n: report.exclusions_total, m: listed })
    : t('rep.exclusion_count', { n: report.exclusions_total });
  const box = clear($('#exclusions'));
  box.dataset.total = String(report.exclusions_total);
  if (!listed) {
    box.appendChild(h('p', { class: 'hint', text: t('rep.exclusions_none') }));
    return;
  }
  const columns = [
    'rep.incident',
    'rep.reported',
    'rep.tier',
    'rep.team',
    'rep.reached',
    'rep.outcome',
    'rep.reason',
  ];
  const head = h(
    'tr',
    null,
    columns.map((key) => h('th', { text: t(key) })),
  );
  // Each cell carries its column's name: on a phone a row is laid out as a card, a cell a line
  // under its name (reports.css), the header row out of sight.
  const cell = (n, props, children) => h('td', { ...props, dataset: { label: t(columns[n]) } }, children);
  const rows = report.exclusions.map((e) => {
    let reason = t('rep.reason.' + e.outcome);
    // A team added by hand after its tier's deadline is judged from its own alert.
    if (e.judged_from_alert) reason = t('rep.reason.from_alert', { reason });
    if (e.covered === false) reason = t('rep.reason.uncovered_with', { reason });
    return h(
      'tr',
      { dataset: { incidentId: e.incident_id, tier: String(e.tier) } },
      cell(0, { class: 'excluded-incident' }, incidentCell(e)),
      cell(1, { text: localTime(e.reported_at) }),
      cell(2, { text: t('tier.short.' + e.tier) }),
      cell(3, { text: exclusionTeams(e) }),
      cell(4, { class: 'excluded-reached', text: exclusionReached(e) }),
      cell(5, { text: t('rep.outcome.' + e.outcome) }),
      cell(6, { text: reason }),
    );
  });
  box.appendChild(table(head, rows, 'exclusions-table'));
}

// The team an exclusion measured per dispatch is of, or the teams alerted in an incident's
// tier (the report gives them in alerted_teams), each as the report labels it.
function exclusionTeams(e) {
  if (e.team_id) return teamLabel(e.team, e.team_id, e.team_label);
  const teams = e.alerted_teams || [];
  return teams.map((a) => teamLabel(a.team, a.team_id, a.team_label)).join(t('rep.list_sep'));
}

// How far each alerted team's alert got: never delivered to a phone (off, asleep with the page
// closed, out of the network) is another failure than delivered and not accepted. Of the
// exclusion's own team the state alone; of an incident's tier each team with its state.
function exclusionReached(e) {
  const teams = e.alerted_teams || [];
  const state = (a) => t('rep.reached.' + a.reached);
  if (e.team_id) return teams.map(state).join(t('rep.list_sep'));
  return teams
    .map((a) => {
      const team = teamLabel(a.team, a.team_id, a.team_label);
      return t('rep.reached_team', { team, state: state(a) });
    })
    .join(t('rep.reached_sep'));
}

// An excluded incident by what it was and where, its id a button that opens its record.
function incidentCell(e) {
  return [
    h('span', { class: 'excluded-what', text: e.category ? t('category.' + e.category) : '' }),
    h('span', { class: 'excluded-where meta', text: placeText(e.village_name, e.lon, e.lat) }),
    h('button', {
      type: 'button',
      class: 'record-link mono',
      text: e.incident_id,
      title: t('rep.record_open'),
      dataset: { control: 'record' },
      onClick: () => record.open(e.incident_id),
    }),
  ];
}

// ---------------------------------------------------------------- charts

const BASE_OPTIONS = {
  responsive: true,
  maintainAspectRatio: false,
  // Drawn at once: a report is read, not watched.
  animation: false,
  plugins: { legend: { display: false } },
};

// Both axes are titled here, in the page's language: none is left to Chart.js's defaults (a
// stray "y" was reported on the per-team chart), and each says what it measures.
function shareChart(canvas, labels, values, horizontal, categoryTitle) {
  const valueAxis = {
    min: 0,
    max: 100,
    title: { display: true, text: t('rep.share_axis') + ' (%)' },
    ticks: { callback: (v) => v + '%' },
  };
  const categoryAxis = { title: { display: true, text: categoryTitle } };
  // Chart.js gives the labels beside horizontal bars half the chart's width; a longer team name
  // ran past the canvas's left edge under the axis title. It is cut to fit, with "…"; the data
  // table under the chart and the bar's tooltip carry the whole name.
  if (horizontal) {
    categoryAxis.ticks = {
      callback(value) {
        return fitLabel(this, this.getLabelForValue(value));
      },
    };
  }
  const chart = new Chart(canvas, {
    type: 'bar',
    data: {
      labels,
      datasets: [
        {
          label: t('rep.share'),
          data: values.map((v) => (v === null ? null : v * 100)),
          backgroundColor: values.map((v) => (v !== null && v >= 0.9 ? COLORS.met : COLORS.bar)),
          // 0% is a sliver, not nothing: a team that met no target is seen, not missed.
          minBarLength: 3,
        },
      ],
    },
    plugins: [VALUE_LABELS],
    options: Object.assign({}, BASE_OPTIONS, {
      indexAxis: horizontal ? 'y' : 'x',
      scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (item) => percent(horizontal ? item.parsed.x : item.parsed.y) } },
      },
    }),
  });
  describeChart(chart, []);
  // What each bar says and how long it is drawn (px): a 0% bar is a sliver, never nothing.
  const bars = chart.getDatasetMeta(0).data.map((bar, i) => {
    const { x, y, base } = bar.getProps(['x', 'y', 'base'], true);
    const length = horizontal ? Math.abs(x - base) : Math.abs(y - base);
    return { label: labels[i], value: chart.data.datasets[0].data[i], px: Math.round(length * 10) / 10 };
  });
  canvas.dataset.bars = JSON.stringify(bars);
  // The labels as drawn beside the bars, so that a reader of the page can tell a cut one.
  const labelled = horizontal ? chart.scales.y : chart.scales.x;
  canvas.dataset.labels = JSON.stringify(labelled.ticks.map((tick) => tick.label));
  return chart;
}

// Room for a label beside horizontal bars: half the chart (Chart.js's most for the axis), less
// the axis title, the tick marks and their padding.
const LABEL_ROOM_LESS_PX = 40;

function fitLabel(scale, text) {
  const room = scale.chart.width / 2 - LABEL_ROOM_LESS_PX;
  const ctx = scale.ctx;
  ctx.save();
  ctx.font = toFont(scale.options.ticks.font).string;
  let cut = String(text);
  if (ctx.measureText(cut).width > room) {
    while (cut.length > 1 && ctx.measureText(cut + '…').width > room) cut = cut.slice(0, -1);
    cut += '…';
  }
  ctx.restore();
  return cut;
}

// Each bar's value written at its end (0.0% included; a group with nothing judged, "—").
const VALUE_LABELS = {
  id: 'valueLabels',
  afterDatasetsDraw(chart) {
    const ctx = chart.ctx;
    const horizontal = chart.options.indexAxis === 'y';
    const data = chart.data.datasets[0].data;
    ctx.save();
    ctx.font = '12px sans-serif';
    ctx.fillStyle = '#111827';
    chart.getDatasetMeta(0).data.forEach((bar, i) => {
      const value = data[i];
      const text = value === null || value === undefined ? '—' : percent(value);
      if (horizontal) {
        ctx.textAlign = 'left';
        ctx.textBaseline = 'middle';
        const x = value === null ? chart.scales.x.getPixelForValue(0) : bar.x;
        ctx.fillText(text, Math.min(x + 4, chart.chartArea.right - ctx.measureText(text).width), bar.y);
      } else {
        ctx.textAlign = 'center';
        ctx.textBaseline = 'bottom';
        const y = value === null ? chart.scales.y.getPixelForValue(0) : bar.y;
        ctx.fillText(text, bar.x, Math.max(y - 2, chart.chartArea.top + 12));
      }
    });
    ctx.restore();
  },
};

// The canvas says in words what the chart draws: its heading, extra facts, and the axes'
// titles as Chart.js resolved them (data-axes holds those for each axis, x and y).
function describeChart(chart, facts) {
  const axes = {};
  for (const scale of Object.values(chart.scales)) {
    const title = scale.options.title;
    if (scale.options.display !== false && title && title.display) axes[scale.axis] = String(title.text);
  }
  const canvas = chart.canvas;
  const heading = canvas.closest('section').querySelector('h2').textContent;
  canvas.dataset.axes = JSON.stringify(axes);
  const names = ['x', 'y'].filter((axis) => axes[axis]).map((axis) => axes[axis]);
  canvas.setAttribute('aria-label', [heading].concat(facts, names).join(' · '));
  return chart;
}

function dataTable(box, head, rows) {
  clear(box).appendChild(
    table(
      h('tr', null, head.map((text) => h('th', { text }))),
      rows.map((row) => h('tr', null, row.map((text) => h('td', { text })))),
    ),
  );
}

function tierChart(totals) {
  const labels = totals.map((f) => t('tier.' + f.tier));
  const values = totals.map((f) => f.share_within_target);
  dataTable(
    $('#data-tiers'),
    [t('rep.tier'), t('rep.met'), t('rep.breached'), t('rep.share')],
    totals.map((f) => [labels[totals.indexOf(f)], String(f.met), String(f.breached), share(f.share_within_target)]),
  );
  return shareChart($('#chart-tiers'), labels, values, false, t('rep.tier'));
}

function teamChart(grouping) {
  const rows = [];
  for (const group of grouping ? grouping.groups : []) {
    const name = teamLabel(group.team, group.key, group.label);
    for (const f of group.tiers) rows.push({ name, tier: f.tier, f });
  }
  // Tier 1's teams first, then tier 2's and tier 3's, each by name, as in the filters.
  rows.sort((a, b) => a.tier - b.tier || a.name.localeCompare(b.name, 'zh'));
  // Tall enough for every team's bar to carry its name.
  $('#chart-teams').parentElement.style.height = Math.max(12, rows.length * 1.75 + 4) + 'rem';
  dataTable(
    $('#data-teams'),
    [t('rep.team'), t('rep.tier'), t('rep.met'), t('rep.breached'), t('rep.share')],
    rows.map((r) => [r.name, t('tier.short.' + r.tier), String(r.f.met), String(r.f.breached), share(r.f.share_within_target)]),
  );
  return shareChart(
    $('#chart-teams'),
    rows.map((r) => r.name),
    rows.map((r) => r.f.share_within_target),
    true,
    t('rep.team'),
  );
}

function histogramChart(histogram) {
  const canvas = $('#chart-histogram');
  const tier = histogram.tier || 1;
  const title = HISTOGRAM_TITLES[currentLang()] || HISTOGRAM_TITLES.en;
  canvas.closest('section').querySelector('h2').textContent = title(tier);
  canvas.dataset.tier = String(tier);
  const bins = histogram.bins;
  const labels = bins.map((b) => b.from_s + '-' + b.to_s);
  dataTable(
    $('#data-histogram'),
    [t('rep.bin'), t('rep.count')],
    bins.filter((b) => b.count).map((b) => [b.from_s + '-' + b.to_s, String(b.count)]),
  );
  // Bins are closed on the right, so a target falls on the border after bin (50, 60]: on a
  // category axis, half a bin after that bin's index. A line for each target the period's
  // incidents were judged by (two when it changed within the period).
  const targets = histogram.targets_s;
  canvas.dataset.targets = JSON.stringify(targets);
  const lowest = Math.min(...targets);
  const highest = Math.max(...targets);
  const annotations = {};
  targets.forEach((target, n) => {
    const at = target / histogram.bin_s - 0.5;
    annotations['target' + n] = {
      type: 'line',
      xMin: at,
      xMax: at,
      borderColor: COLORS.line,
      borderWidth: 2,
      borderDash: [6, 4],
      label: {
        display: true,
        content: t('rep.target_line', { n: target }),
        position: n % 2 ? 'end' : 'start',
        backgroundColor: COLORS.line,
      },
    };
  });
  const color = (b) => (b.to_s <= lowest ? COLORS.met : b.to_s <= highest ? COLORS.between : COLORS.breach);
  const chart = new Chart(canvas, {
    type: 'bar',
    data: {
      labels,
      datasets: [
        {
          label: t('rep.count'),
          data: bins.map((b) => b.count),
          backgroundColor: bins.map(color),
          barPercentage: 1,
          categoryPercentage: 0.95,
        },
      ],
    },
    options: Object.assign({}, BASE_OPTIONS, {
      scales: {
        x: { title: { display: true, text: t('rep.seconds_axis') } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t('rep.count_axis') } },
      },
      plugins: {
        legend: { display: false },
        annotation: { annotations },
      },
    }),
  });
  return describeChart(chart, [t('rep.histogram_n', { n: histogram.n })]);
}

// ---------------------------------------------------------------- downloads

// A plain link cannot carry the bearer token: fetch the file with it and save it from memory.
async function download(path, part, format) {
  const token = api.token;
  if (!token) {
    signOut(() => t('login.expired'));
    return;
  }
  let reply;
  if (state.downloadFailure) {
    state.downloadFailure = null;
    showDone();
  }
  try {
    reply = await fetch(path, { headers: { authorization: 'Bearer ' + token } });
  } catch (error) {
    failDownload(error);
    return;
  }
  if (reply.status === 401 && api.token === token) {
    // The server has ended the token (it judges expiry, not this computer's clock): the page
    // signs out saying why, as it does when any other request is refused so.
    const refused = await errorFromReply(reply);
    if (api.token !== token) return;
    api.forget();
    api.onUnauthorized(refused.detail, refused.body && refused.body.error);
    return;
  }
  if (!reply.ok) {
    failDownload(await errorFromReply(reply));
    return;
  }
  const blob = await reply.blob();
  const url = URL.createObjectURL(blob);
  const name = fileName(reply.headers.get('content-disposition'), part, format);
  const link = h('a', { href: url, download: name });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// Said in the status line until the next report or download, in the language of the moment: a
// switch draws the page again, and must not take the failure with it.
function failDownload(error) {
  state.downloadFailure = error;
  showDownloadFailure();
}

// What the status line says over a report: when it was generated, or the last download's failure.
function showDone() {
  if (!state.report) return;
  $('#status').textContent = t('rep.done', { t: localTime(state.report.generated_at) });
  $('#status').className = 'status';
  showDownloadFailure();
}

function showDownloadFailure() {
  if (!state.downloadFailure) return;
  $('#status').textContent = t('rep.download_failed', { detail: errorText(state.downloadFailure) });
  $('#status').className = 'status error';
}

// Saved under a name in the page's language (响应时间报表-20261201-0930.csv, or
// response-times-20261201-0930.csv in English), stamped with the server's time as the server
// named the file.
function fileName(disposition, part, format) {
  const stamp = /(\d{8}-\d{4})\.[a-z]+"?(;|$)/i.exec(disposition || '');
  return t('rep.file.' + part) + (stamp ? '-' + stamp[1] : '') + '.' + format;
}

boot();

// ---------------------------------------------------------------- verifying the record

// The chain head the report on screen states: the event log's newest row it was computed
// against, which the verification looks for.
function renderReportHead() {
  const report = state.report;
  if (!report) {
    $('#report-head').textContent = '';
    return;
  }
  const head = report.chain_head;
  $('#report-head').textContent = head
    ? t('rep.verify_report_head', { hash: head.hash, at: localTime(head.at) })
    : t('rep.verify_report_no_head');
}

async function verifyRecord() {
  const ticket = ++state.verifying;
  const head = state.report && state.report.chain_head;
  state.verification = null;
  state.verifyFailure = null;
  $('#verify-run').disabled = true;
  renderVerification();
  try {
    const query = head ? '?head=' + encodeURIComponent(head.hash) : '';
    const answer = await api.get('/api/v1/audit/verification' + query);
    if (ticket !== state.verifying) return;
    state.verification = answer;
  } catch (error) {
    if (ticket !== state.verifying) return;
    state.verifyFailure = error;
    const wait = verificationRunningS(error);
    if (wait !== null) {
      // Another verification runs on the server (one at a time): the button waits as long as
      // the server asks, then may be pressed again.
      renderVerification();
      setTimeout(() => {
        if (ticket === state.verifying) $('#verify-run').disabled = false;
      }, wait * 1000);
      return;
    }
  } finally {
    if (ticket === state.verifying && verificationRunningS(state.verifyFailure) === null) {
      $('#verify-run').disabled = false;
    }
  }
  renderVerification();
}

// The seconds to wait when the server refused a verification because another one is running
// (429 verification_running, with Retry-After); null for any other outcome. Not a rate limit
// reached: the page says a verification is under way rather than 操作过于频繁.
function verificationRunningS(error) {
  if (!error || error.status !== 429 || !error.body || error.body.error !== 'verification_running') {
    return null;
  }
  return error.retryAfterS || error.body.retry_after_s || 10;
}

function renderVerification() {
  const box = $('#verify-result');
  clear(box);
  const answer = state.verification;
  const wait = verificationRunningS(state.verifyFailure);
  if (wait !== null) {
    $('#verify').dataset.state = 'waiting';
    box.append(h('p', { class: 'hint verify-wait', text: t('rep.verify_busy', { s: wait }) }));
    return;
  }
  if (state.verifyFailure !== null) {
    $('#verify').dataset.state = 'failed';
    box.append(h('p', { class: 'error', text: t('rep.verify_failed', { detail: errorText(state.verifyFailure) }) }));
    return;
  }
  if (!answer) {
    if ($('#verify-run').disabled) {
      $('#verify').dataset.state = 'loading';
      box.append(h('p', { class: 'hint', text: t('rep.verify_running') }));
    } else {
      delete $('#verify').dataset.state;
    }
    return;
  }
  $('#verify').dataset.state = answer.ok ? 'ok' : 'broken';
  const lines = [];
  if (answer.ok) {
    lines.push(h('p', { class: 'verify-ok', text: t('rep.verify_ok', { events: answer.events, incidents: answer.incidents }) }));
  } else {
    lines.push(h('p', { class: 'verify-broken', text: t('rep.verify_broken') }));
    const items = answer.breaks.map((b) => h('li', { class: 'verify-break' }, breakLines(b)));
    lines.push(h('ul', { class: 'verify-breaks' }, items));
  }
  lines.push(
    h('p', {
      class: 'verify-head',
      text: answer.head
        ? t('rep.verify_head', { hash: answer.head.hash, at: localTime(answer.head.at) })
        : t('rep.verify_no_head'),
    }),
  );
  if (answer.unchecked) lines.push(h('p', { class: 'hint', text: t('rep.verify_unchecked', { n: answer.unchecked }) }));
  if (answer.head_found === true) {
    lines.push(h('p', { class: 'verify-ok', text: t('rep.verify_head_found', { at: localTime(answer.asked_head.at) }) }));
  } else if (answer.head_found === false) {
    const asked = state.report && state.report.chain_head ? state.report.chain_head.hash : '';
    lines.push(h('p', { class: 'verify-broken', text: t('rep.verify_head_missing', { hash: asked }) }));
  }
  box.append(...lines);
}

// A break as the office finds it in its pages: the incident by its report time (Beijing time),
// category and village, the event named; then the command line's words in full.
function breakLines(b) {
  const lines = [];
  const place = b.place;
  if (place) {
    const category = place.category ? t('category.' + place.category) : '—';
    lines.push(
      h('div', {
        class: 'verify-where',
        text: t('rep.verify_where', {
          id: place.incident_id,
          at: localTime(place.reported_at),
          category,
          village: place.village || t('rep.verify_no_village'),
        }),
      }),
    );
    if (place.event_type) {
      lines.push(h('div', { text: t('rep.verify_event', { type: place.event_type, at: localTime(place.event_at) }) }));
    }
  }
  const says = breakSentence(b);
  if (says !== null) lines.push(h('div', { class: 'verify-says', text: says }));
  lines.push(h('div', { class: 'verify-text', text: t('rep.verify_text', { text: b.text }) }));
  return lines;
}

// A translated word, or the server's own when the page has none for it.
function known(key, fallback, vars) {
  const text = t(key, vars);
  return text === key ? fallback : text;
}

// A value a break names: times in Beijing time as the page shows them, null and flags in words.
function breakValue(value) {
  if (value === null || value === undefined) return t('rep.break.null');
  if (typeof value === 'boolean') return t(value ? 'rep.break.true' : 'rep.break.false');
  if (typeof value === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(value)) return localTime(value);
  return String(value);
}

// The break in the page's language, from its code and values (docs/security.md lists them);
// null for a code the page does not know, which the command's words then say alone.
function breakSentence(b) {
  if (!b.code) return null;
  const values = b.values || {};
  const vars = {};
  for (const [name, value] of Object.entries(values)) vars[name] = breakValue(value);
  if (values.table) vars.row = known('rep.break.row.' + values.table, values.table, vars);
  if (values.column) vars.column = known('rep.break.col.' + values.column, values.column);
  if (values.event_type) vars.event = known('rep.break.event.' + values.event_type, values.event_type);
  if (values.gone !== undefined) vars.n = values.gone;
  let key = 'rep.break.' + b.code;
  if (b.code === 'value_differs' && values.event_id === null) key += '_none';
  const text = t(key, vars);
  return text === key ? null : text;
}

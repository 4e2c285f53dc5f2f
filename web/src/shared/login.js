import { keepLoading } from './api.js';
import { LOGIN_ENDED_EVENT } from './live.js';
import { $ } from './dom.js';
import { clockTime } from './format.js';
import { errorText } from './errors.js';
import { onLangChange, t } from './i18n.js';

// What is said under the login form, kept as a function so that it follows the language switch.
let loginMessage = null;
// Why a page signed in on this device cannot open yet, likewise.
let gateMessage = null;
onLangChange(() => {
  if (loginMessage) $('#login-error').textContent = loginMessage();
  if (gateMessage) $('#gate').textContent = gateMessage();
});

function showGateProblem(message) {
  gateMessage = message || null;
  const line = $('#gate');
  line.textContent = gateMessage ? gateMessage() : '';
  line.hidden = !gateMessage;
}

/** Why an account may not use an office page (console, reports): a team leader is told where his
 * page is, as he is the one who lands here by mistake. */
export function officeRefusal(role) {
  const refused = t('login.wrong_role', { role: t('role.' + role) });
  return role === 'leader' ? refused + ' — ' + t('login.leader_page') : refused;
}

/** Say why under the login form; `message` is a function giving the text, or nothing. */
export function showLoginError(message) {
  loginMessage = message || null;
  $('#login-error').textContent = loginMessage ? loginMessage() : '';
}

/** Sign in with the login form's fields; on failure say why under the form. */
export async function submitLogin(api, form) {
  const username = form.elements.namedItem('username').value.trim();
  const password = form.elements.namedItem('password').value;
  try {
    await api.login(username, password);
  } catch (error) {
    showLoginError(() => t('login.failed', { detail: errorText(error, { login: true }) }));
    return false;
  }
  form.elements.namedItem('password').value = '';
  showLoginError(null);
  return true;
}

function setIfPresent(selector, apply) {
  const el = $(selector);
  if (el) apply(el);
}

/**
 * The sign-in every page shares: the login form, signing out, an expired session, and who may
 * use the page. `page.admit(me)` gives null when `me` may use the page, else a function saying
 * why not; `page.enter(me)` starts the page for `me`; `page.leave(ended)` stops what the page
 * runs, `ended` true when the user signed out with 退出 (not for a session the server ended);
 * `page.onSubmit()` (optional) runs within the login form's submit, a user's gesture.
 * Returns `signOut(message)`, for the page's own channels that find the session gone.
 */
export function signInGate(api, page) {
  const renewal = keepRenewed(api);
  function signOut(message, ended = false) {
    renewal.stop();
    gate.stop();
    showGateProblem(null);
    page.leave(ended);
    $('#app').hidden = true;
    $('#logout').hidden = true;
    setIfPresent('#conn', (el) => (el.hidden = true));
    setIfPresent('#who', (el) => (el.textContent = ''));
    $('#login').hidden = false;
    showLoginError(message);
    $('#login-form').elements.namedItem('username').focus();
  }

  // Who is signed in on this device, asked again while the server cannot answer (restarting
  // behind a proxy's 502, busy, out of reach): the page says so rather than stay blank.
  const gate = keepLoading(
    async () => enter(await api.get('/api/v1/auth/me')),
    (error, tries) => {
      showGateProblem(error ? () => t('gate.retrying', { detail: errorText(error), n: tries }) : null);
    },
  );

  function enter(me) {
    const refusal = page.admit(me);
    if (refusal) {
      // A token this page cannot use is ended, not left working where nobody holds it.
      api.logout();
      signOut(refusal);
      return;
    }
    $('#login').hidden = true;
    $('#app').hidden = false;
    $('#logout').hidden = false;
    setIfPresent('#who', (el) => (el.textContent = me.name));
    renewal.start();
    page.enter(me);
  }

  function start() {
    gate.run();
  }

  // 退出 ends the token on the server too; a sign-out after the server refused the token
  // (login.expired) only forgets it here.
  $('#logout').addEventListener('click', () => {
    api.logout();
    signOut(null, true);
  });
  $('#login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!(await submitLogin(api, event.target))) return;
    if (page.onSubmit) page.onSubmit();
    start();
  });
  // A login ended on purpose says what ended it and what to do, and the page stops: logged out
  // elsewhere (another tab's 退出, another device), the account disabled, the password reset by
  // the administrator. Its socket closed with the end's own code (shared/live.js), or a request
  // refused with its own 401 (whichever reaches the page first). Any other refusal: the login
  // expired.
  const ended = (why) => {
    api.forget();
    signOut(() => t(ENDED_MESSAGES[why] || 'login.expired'));
  };
  window.addEventListener(LOGIN_ENDED_EVENT, (event) => ended(event.detail));
  api.onUnauthorized = (detail, code) => ended(endedBy(detail, code));
  if (api.token) start();
  else signOut(null);
  return signOut;
}

// What a page says of a login ended on purpose, by the 401's `error` code or the socket's close.
const ENDED_MESSAGES = {
  logged_out: 'login.signed_out',
  account_disabled: 'login.account_disabled',
  password_reset: 'login.password_reset',
  login_ended: 'login.ended',
};
// The same in the 401's detail, for a server that sent only `unauthorized` (the release before).
const ENDED_DETAILS = {
  '(logged out)': 'logged_out',
  '(account disabled)': 'account_disabled',
  '(password reset)': 'password_reset',
  '(login ended)': 'login_ended',
};

/** What ended a login refused with `detail` and `code` (a 401's), or null: it expired. */
export function endedBy(detail, code) {
  if (ENDED_MESSAGES[code]) return code;
  for (const [mark, why] of Object.entries(ENDED_DETAILS)) {
    if ((detail || '').includes(mark)) return why;
  }
  return null;
}

// A login's term counts from its token's arrival; when no term was kept with it (a token stored
// before terms were), the server's default.
const DEFAULT_TERM_S = 12 * 3600;
const RENEW_CHECK_MS = 1000;
// Said on the page this long before the login ends, when it could not be renewed by then.
const WARN_MS = 30 * 60 * 1000;

/**
 * Keeps the login of an open page alive through a shift: once half of its token's term has
 * passed, the token is exchanged for a fresh one (POST /api/v1/auth/renew), with nothing on
 * the page touched. A renewal the server cannot be reached for is tried again shortly; in the
 * login's last half hour (its last quarter, for a short term) the page says when it ends and
 * offers to renew at once. A refusal (logged out elsewhere, disabled, a password reset) signs
 * the page out as any 401 does: the phone's untaken taps stay in its outbox for the next login.
 * The token that ends with the login itself (DISPATCH_LOGIN_MAX_AGE_S) is not renewed: in its
 * last half hour the page says when the login ends and that a new one is due then.
 */
// The login's last token: it ends when the login does (a token kept before logins had an end
// has none, and is renewed as ever).
function isLast(term) {
  if (!term.login_expires_at) return false;
  return Date.parse(term.expires_at) >= Date.parse(term.login_expires_at);
}

function keepRenewed(api) {
  let timer = null;
  let inFlight = false;
  let retryAt = 0;
  let failure = null;

  function note() {
    let line = $('#session-note');
    if (!line) {
      line = document.createElement('p');
      line.id = 'session-note';
      line.className = 'notice';
      line.setAttribute('role', 'alert');
      line.hidden = true;
      const text = document.createElement('span');
      const button = document.createElement('button');
      button.type = 'button';
      button.addEventListener('click', () => renew());
      line.append(text, ' ', button);
      $('#app').prepend(line);
    }
    return line;
  }

  function show(left) {
    const term = api.term;
    if (left === null || !term) {
      const line = $('#session-note');
      if (line) line.hidden = true;
      return;
    }
    const line = note();
    const last = isLast(term);
    line.firstChild.textContent = last
      ? t('login.final', { time: clockTime(term.expires_at) })
      : t('login.ending', {
          time: clockTime(term.expires_at),
          detail: failure ? errorText(failure) : '',
        });
    line.lastChild.textContent = t('login.renew');
    // No renewal can outlast the login: only a new login helps, once this one ends.
    line.lastChild.hidden = last;
    line.hidden = false;
  }

  async function renew() {
    if (inFlight) return;
    inFlight = true;
    try {
      await api.renew();
      failure = null;
      retryAt = 0;
    } catch (error) {
      failure = error;
      const term = api.term;
      const termMs = 1000 * ((term && term.expires_in) || DEFAULT_TERM_S);
      retryAt = Date.now() + Math.min(30000, termMs / 10);
    } finally {
      inFlight = false;
    }
    check();
  }

  function check() {
    const term = api.term;
    if (!term) return;
    const termMs = 1000 * (Number(term.expires_in) || DEFAULT_TERM_S);
    const received = Number(term.received) || 0;
    const elapsed = Date.now() - received;
    // A clock set back since the token came reads as a term begun in the future: renewed now.
    const due = elapsed >= termMs / 2 || elapsed < 0;
    const left = termMs - Math.max(elapsed, 0);
    if (isLast(term)) {
      show(left <= WARN_MS ? left : null);
      return;
    }
    show(left <= Math.min(WARN_MS, termMs / 4) ? left : null);
    if (due && Date.now() >= retryAt) renew();
  }

  function onVisible() {
    if (document.visibilityState === 'visible') check();
  }

  onLangChange(() => {
    const line = $('#session-note');
    if (line && !line.hidden) check();
  });

  return {
    start() {
      clearInterval(timer);
      failure = null;
      retryAt = 0;
      timer = setInterval(check, RENEW_CHECK_MS);
      document.addEventListener('visibilitychange', onVisible);
      check();
    },
    stop() {
      clearInterval(timer);
      timer = null;
      document.removeEventListener('visibilitychange', onVisible);
      show(null);
    },
  };
}

// The REST API with a bearer token kept on this device, so a leader logs in once.
import { load, save, remove } from './storage.js';

export class ApiError extends Error {
  constructor(status, detail, retryAfterS = null, body = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    // The answer as sent ({"error", "detail", "field" or "fields"}): shared/errors.js says it.
    this.body = body && typeof body === 'object' ? body : null;
    // With 429 and 503: the seconds the server asks the client to wait before trying again.
    this.retryAfterS = retryAfterS;
  }
}

export const RETRY_TRIES = 5;
const LONGEST_WAIT_S = 5;

/**
 * A request given up after the page's time for an answer: a line that died without a word (a
 * phone that changed networks) keeps a request waiting until TCP gives up, many minutes, and a
 * tap waiting on it is neither recorded nor sent again. It is a network failure like any other
 * (a TypeError, as fetch's own): the server may or may not have it, so only what is safe to
 * repeat is sent again.
 */
export class RequestTimeout extends TypeError {
  constructor(seconds) {
    super('no answer within ' + seconds + ' s');
    this.name = 'RequestTimeout';
  }
}

export class Api {
  // `timeoutS`: how long a request waits for its whole answer (none: as long as the browser
  // lets it; the reports page's queries over a year of a city can take that).
  constructor(storageKey, { timeoutS = null } = {}) {
    this.key = storageKey;
    this.timeoutS = Number.isFinite(timeoutS) && timeoutS > 0 ? timeoutS : null;
    this.onUnauthorized = () => {};
  }

  // fetch, and the reading of its JSON body, given up after `timeoutS`.
  async exchange(path, init) {
    if (this.timeoutS === null) {
      const reply = await fetch(path, init);
      return [reply, await readJson(reply)];
    }
    const signal = AbortSignal.timeout(this.timeoutS * 1000);
    try {
      const reply = await fetch(path, Object.assign({ signal }, init));
      return [reply, await readJson(reply, signal)];
    } catch (error) {
      if (signal.aborted) throw new RequestTimeout(this.timeoutS);
      throw error;
    }
  }

  get token() {
    const raw = load(this.key);
    if (!raw) return null;
    try {
      const stored = JSON.parse(raw);
      // Its expiry is not judged here: this device's clock may be hours off (set by hand, no
      // network time), and a phone ahead by more than a token's life could never log in. The
      // server judges it, and its 401 (or the websocket's close) signs the page out.
      return stored.token || null;
    } catch (_) {
      return null;
    }
  }

  async login(username, password) {
    const body = new URLSearchParams({ username, password });
    const [reply, data] = await this.exchange('/api/v1/auth/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: body.toString(),
    });
    if (!reply.ok) throw new ApiError(reply.status, detailOf(data, reply), null, data);
    this.keep(data);
    return data;
  }

  // The token with its term, and when (by this device's clock) it came: the renewal in
  // shared/login.js counts from then, a difference of the device's own readings, so a clock
  // set hours off moves it not at all.
  keep(data) {
    const kept = {
      token: data.access_token,
      expires_at: data.expires_at,
      expires_in: data.expires_in,
      login_expires_at: data.login_expires_at,
      received: Date.now(),
    };
    save(this.key, JSON.stringify(kept));
  }

  /**
   * The stored token's term and when it came ({expires_in, received, expires_at,
   * login_expires_at}), or null.
   */
  get term() {
    try {
      const stored = JSON.parse(load(this.key) || 'null');
      return stored && stored.token ? stored : null;
    } catch (_) {
      return null;
    }
  }

  /**
   * A fresh token for the one held while it still holds (POST /api/v1/auth/renew), kept in its
   * place unless the page signed out or another login took its place meanwhile. A 401 signs the
   * page out as any request's does.
   */
  async renew() {
    const token = this.token;
    const data = await this.post('/api/v1/auth/renew');
    if (this.token === token) this.keep(data);
    return data;
  }

  /**
   * Log out: the token is forgotten here at once and ended on the server (a token left on a
   * shared console or a lost phone works no more), as far as the server can be reached. Nobody
   * waits for that answer: a server out of reach or slow keeps no one signed in on this device.
   * `keepalive` lets the request outlive a page closed right after.
   */
  logout() {
    const token = this.token;
    this.forget();
    if (!token) return Promise.resolve();
    return fetch('/api/v1/auth/logout', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token },
      keepalive: true,
    }).then(
      () => {},
      () => {},
    );
  }

  /** Forget the token on this device only: for one the server has refused already. */
  forget() {
    remove(this.key);
  }

  get(path) {
    return this.request('GET', path);
  }

  post(path, body, headers) {
    return this.request('POST', path, body, headers);
  }

  // A POST the server was too busy to take (503) or that never reached it, sent again up to
  // `tries` times after the Retry-After seconds (at most 5). Only for requests that are safe to
  // repeat: an idempotent action, or one carrying an Idempotency-Key. `waiting(busy, seconds,
  // attempt, tries)` is told before each wait.
  async postRetrying(path, body, headers, waiting, tries = RETRY_TRIES) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.post(path, body, headers);
      } catch (error) {
        const busy = error instanceof ApiError && error.status === 503;
        if (!(busy || error instanceof TypeError) || attempt >= tries) throw error;
        const seconds = Math.min(error.retryAfterS || 1, LONGEST_WAIT_S);
        waiting(busy, seconds, attempt, tries);
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      }
    }
  }

  async request(method, path, body, headers) {
    const token = this.token;
    if (!token) {
      this.onUnauthorized(null);
      throw new ApiError(401, 'not logged in');
    }
    const init = { method, headers: Object.assign({ authorization: 'Bearer ' + token }, headers) };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const [reply, data] = await this.exchange(path, init);
    // A refusal of a token no longer held (one logged out while this request was on its way)
    // says nothing of the one held now, if any: only the refused token signs the page out.
    if (reply.status === 401 && this.token === token) {
      this.forget();
      this.onUnauthorized(detailOf(data, reply), data && data.error);
    }
    if (!reply.ok) throw new ApiError(reply.status, detailOf(data, reply), retryAfter(reply), data);
    return data;
  }
}

function retryAfter(reply) {
  const seconds = Number(reply.headers.get('retry-after'));
  return Number.isFinite(seconds) && seconds > 0 ? seconds : null;
}

// A body that is not JSON is null; a body cut off by the time limit is the limit's failure.
async function readJson(reply, signal) {
  try {
    return await reply.json();
  } catch (error) {
    if (signal && signal.aborted) throw error;
    return null;
  }
}

function detailOf(data, reply) {
  if (data && typeof data.detail === 'string') return data.detail;
  if (data && Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join('; ');
  return reply.status + ' ' + reply.statusText;
}

const LONGEST_PAUSE_MS = 10000;

/**
 * What a page needs from the server when it opens, asked for again while the server is out of
 * reach, restarting or busy (after 1 s, 2 s, 4 s … at most 10 s, and at once when the browser is
 * back online), so that the page never stays blank or empty for want of asking. `load()` does
 * the requests; `show(error, tries)` is told of each failure, and `show(null, 0)` of the
 * success. A 401 ends it: the page has signed out. Returns {run, stop}.
 */
export function keepLoading(load, show) {
  let tries = 0;
  let timer = null;
  let stopped = false;
  const onOnline = () => {
    if (timer !== null) run();
  };
  async function run() {
    clearTimeout(timer);
    timer = null;
    stopped = false;
    window.addEventListener('online', onOnline);
    try {
      await load();
    } catch (error) {
      if (stopped || (error instanceof ApiError && error.status === 401)) return false;
      tries += 1;
      show(error, tries);
      timer = setTimeout(run, Math.min(LONGEST_PAUSE_MS, 1000 * Math.pow(2, tries - 1)));
      return false;
    }
    tries = 0;
    if (!stopped) show(null, 0);
    window.removeEventListener('online', onOnline);
    return true;
  }
  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    tries = 0;
    window.removeEventListener('online', onOnline);
  }
  return { run, stop };
}

// Open incidents asked for at once (the API's own default page).
const OPEN_PAGE = 200;

/**
 * Every open incident the account may see, a page at a time: the list's first page alone (the
 * newest 200) left older open incidents off the page, their late tiers with them, once there
 * were more. Each next page starts after the last incident of the one before (`before`), not at
 * a count: incidents closed between pages, however many, move no open one past it, and those
 * reported at one instant come in the order of their ids, each once.
 */
export async function openIncidents(api) {
  const open = [];
  let before = null;
  for (;;) {
    const after = before === null ? '' : '&before=' + encodeURIComponent(before);
    const page = await api.get('/api/v1/incidents?status=open&limit=' + OPEN_PAGE + after);
    for (const incident of page) open.push(incident);
    if (page.length < OPEN_PAGE) break;
    before = page[page.length - 1].id;
  }
  return open;
}

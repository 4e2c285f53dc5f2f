// The websocket: hello with resume_from, welcome (server clock), replay, live messages, acks.
// The last seq seen is kept on the device, so a reload or a dropped line resumes where it was.
import { setServerOffset } from './format.js';
import { load, save } from './storage.js';

const RESTART = 1012;
// While the device says it is offline, a connection is still tried this often.
const OFFLINE_RETRY_MS = 5000;
const POLICY = 1008;
// The socket's login was ended on purpose (docs/api.md): no renewal or reconnect brings it
// back. The page is told by LOGIN_ENDED_EVENT, its `detail` saying what ended it (as the REST
// API's 401 `error` code says it), and shows it signed out and why.
const ENDED = {
  4001: 'logged_out', // logged out, here or on another device
  4002: 'account_disabled', // the administrator disabled the account
  4003: 'password_reset', // the administrator reset the password
  4004: 'login_ended', // the administrator ended it otherwise
};
export const LOGIN_ENDED_EVENT = 'dispatch:login-ended';
// A socket can stay "open" for minutes after its line went dead without a word (a phone's Wi-Fi
// dropped behind NAT, a server host gone): TCP gives up only after its retries, and the
// protocol's pings are answered by the browser, unseen here. So the page looks for itself: after
// PING_S with nothing heard it sends a ping, which the server answers with a pong; with nothing
// heard for TIMEOUT_S more the socket is given up and another opened, resuming. A socket still
// opening gets the same time for its welcome. The server may set both (its page config).
const PING_S = 20;
const TIMEOUT_S = 10;
// Pings sent one after another once welcomed, each pong's server time a sample of the clock.
const CLOCK_SAMPLES = 3;
// The device's clock moved by more than this against the page's own steady one (set by hand, by
// NTP, a phone's automatic time): the server's clock is measured again at once.
const CLOCK_JUMP_MS = 500;

function positiveMs(seconds, fallback) {
  const value = Number(seconds);
  return (Number.isFinite(value) && value > 0 ? value : fallback) * 1000;
}

export class Live {
  constructor(options) {
    this.options = options;
    this.seqKey = 'dispatch.seq.' + options.userId;
    const stored = parseInt(load(this.seqKey) || '0', 10);
    this.lastSeq = Number.isFinite(stored) && stored > 0 ? stored : 0;
    this.offsetMs = 0;
    this.bestRttMs = Infinity; // the round trip of the sample offsetMs comes from
    this.sampledDrift = null; // the device's clock less the steady one when offsetMs was taken
    this.helloAt = null;
    this.pingsOut = []; // when each ping not answered yet went out, oldest first
    this.samplesWanted = 0;
    this.attempt = 0;
    this.socket = null;
    this.timer = null;
    this.ackTimer = null;
    this.ackedSeq = 0; // the last seq acknowledged on the current socket
    this.stopped = false;
    this.welcomeSeq = 0;
    this.everConnected = false;
    this.caughtUp = false;
    this.pingMs = positiveMs(options.pingS, PING_S);
    this.timeoutMs = positiveMs(options.timeoutS, TIMEOUT_S);
    this.quietTimer = null; // when it fires: ping
    this.deadTimer = null; // when it fires: give the socket up
    this.helloSent = false;
    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.dropOffline();
    this.onVisible = () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    };
  }

  // The server's clock as best known here. A server time read in the middle of a round trip
  // was read that trip's half before the page got it (the lines' delays taken as even): taken
  // as is, the page ran behind by the one-way delay, a countdown as much too long. The sample
  // of the shortest round trip wins, its error at most half of it.
  clockSample(serverIso, rttMs) {
    const serverTime = Date.parse(serverIso);
    if (!Number.isFinite(serverTime) || !(rttMs >= 0) || rttMs > this.bestRttMs) return;
    this.bestRttMs = rttMs;
    const deviceNow = Date.now();
    this.offsetMs = serverTime + rttMs / 2 - deviceNow;
    this.sampledDrift = deviceNow - performance.now();
    // Dates are shown when a time is not of the server's today (shared/format.js).
    setServerOffset(this.offsetMs);
  }

  serverNow() {
    this.watchDeviceClock();
    return Date.now() + this.offsetMs;
  }

  // The offset holds while the device's clock runs on as it did when it was measured. Set
  // meanwhile, every clock on screen was off by the change, for as long as the socket lasted.
  // performance.now() counts on whatever the device's clock is set to, so a change shows as
  // the two parting. The server's clock is then measured again rather than the change read off
  // them: performance.now() may stand still while the device sleeps, which parts them too.
  watchDeviceClock() {
    if (this.sampledDrift === null) return;
    const drift = Date.now() - performance.now();
    if (Math.abs(drift - this.sampledDrift) <= CLOCK_JUMP_MS) return;
    this.sampledDrift = drift; // once for each change
    const socket = this.socket;
    // A socket not yet past its hello measures on its welcome anyway.
    if (!this.helloSent || !socket || socket.readyState !== WebSocket.OPEN) return;
    this.bestRttMs = Infinity;
    this.samplesWanted = CLOCK_SAMPLES;
    this.sendPing(socket);
  }

  start() {
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.timer);
    this.stopWatching();
    if (this.socket) this.socket.close(1000, 'bye');
  }

  reconnectNow() {
    if (this.stopped) return;
    const state = this.socket ? this.socket.readyState : WebSocket.CLOSED;
    if (state === WebSocket.CLOSED || state === WebSocket.CLOSING) {
      clearTimeout(this.timer);
      this.connect();
    }
  }

  connect() {
    if (this.stopped) return;
    const token = this.options.token();
    if (!token) {
      this.options.onAuthFailed();
      return;
    }
    const scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(scheme + '//' + window.location.host + '/ws');
    socket.helloToken = token;
    this.socket = socket;
    this.caughtUp = false;
    this.ackedSeq = 0;
    this.helloSent = false;
    this.helloAt = null;
    this.pingsOut = [];
    this.samplesWanted = 0;
    this.status(this.everConnected ? 'reconnecting' : 'connecting');
    this.heard(socket);
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: 'hello', token, resume_from: this.lastSeq }));
      this.helloSent = true;
      this.helloAt = performance.now();
    };
    socket.onmessage = (event) => {
      this.heard(socket);
      this.receive(event.data);
    };
    socket.onclose = (event) => this.closed(socket, event);
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (_) {
      return;
    }
    if (message.type === 'welcome') {
      // Each socket measures afresh (the device's clock may have been set meanwhile): the
      // hello's round trip first, whose server time was read somewhere within it, then pings'.
      this.bestRttMs = Infinity;
      if (this.helloAt !== null) {
        this.clockSample(message.data.server_time, performance.now() - this.helloAt);
      }
      this.samplesWanted = CLOCK_SAMPLES;
      this.sendPing(this.socket);
      this.welcomeSeq = message.seq;
      const missed = Math.max(0, message.seq - this.lastSeq);
      const reconnected = this.everConnected;
      this.everConnected = true;
      this.attempt = 0;
      this.options.onWelcome(message.data, { reconnected, missed });
      this.checkCaughtUp();
      return;
    }
    if (message.type === 'pong') {
      // Pongs answer pings in order. Being heard was all a liveness ping was for; each also
      // carries the server's time as it answered.
      const sentAt = this.pingsOut.shift();
      if (sentAt !== undefined && message.data) {
        this.clockSample(message.data.server_time, performance.now() - sentAt);
      }
      if (this.samplesWanted > 0) this.sendPing(this.socket);
      return;
    }
    if (message.type === 'resync') {
      // The gap cannot be replayed: start from the latest seq and reload state over HTTP.
      this.remember(message.seq);
      this.options.onResync();
      this.checkCaughtUp();
      return;
    }
    if (typeof message.seq !== 'number' || message.seq <= this.lastSeq) return;
    this.remember(message.seq);
    const replayed = message.seq <= this.welcomeSeq;
    // An alert is acknowledged before the page acts on it: the server's delivered time then
    // comes before whatever the page reports next (shown, accepted). Other messages share one
    // ack per burst.
    if (message.type === 'alert') this.ackNow();
    else this.scheduleAck();
    try {
      this.options.onMessage(message, { replayed });
    } finally {
      this.checkCaughtUp();
    }
  }

  checkCaughtUp() {
    if (!this.caughtUp && this.lastSeq >= this.welcomeSeq) {
      this.caughtUp = true;
      this.status('live');
      // The page may put a replayed alert on screen now: what it got is acknowledged first.
      if (this.ackTimer !== null) this.ackNow();
      if (this.options.onCaughtUp) this.options.onCaughtUp();
    }
  }

  remember(seq) {
    this.lastSeq = seq;
    save(this.seqKey, String(seq));
  }

  // Acks are cumulative: one per burst of messages is enough, and it goes out right away.
  scheduleAck() {
    if (this.ackTimer !== null) return;
    this.ackTimer = setTimeout(() => this.ackNow(), 0);
  }

  // Acknowledge everything received so far, now (nothing is sent when it already was).
  ackNow() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const socket = this.socket;
    if (this.lastSeq > this.ackedSeq && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
      this.ackedSeq = this.lastSeq;
    }
  }

  // The device says its network is gone (a lift, a tunnel, flight mode). A socket can stay
  // "open" for minutes after that before TCP gives up, the page saying 实时连接正常 while
  // nothing can reach it: it is let go now and the page says it is offline. The online event
  // brings it back at once; meanwhile it tries now and then, in case the device was wrong.
  dropOffline() {
    const socket = this.socket;
    if (this.stopped || !socket) return;
    this.letGo(socket, 'offline');
    this.attempt += 1;
    this.status('offline');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), OFFLINE_RETRY_MS);
  }

  // Stop listening to a socket and close it: its close, whenever it comes, is no news.
  letGo(socket, reason) {
    this.stopWatching();
    this.socket = null;
    socket.onmessage = null;
    socket.onclose = null;
    try {
      socket.close(1000, reason);
    } catch (_) {
      // Closing a socket that never opened: nothing to close.
    }
  }

  // Something came on the socket (or it is just opening): the line is alive, look again later.
  heard(socket) {
    this.stopWatching();
    this.quietTimer = setTimeout(() => this.probe(socket), this.pingMs);
  }

  probe(socket) {
    if (socket !== this.socket || this.stopped) return;
    // Before its hello a ping would be refused: a socket still opening only gets the wait.
    if (this.helloSent && socket.readyState === WebSocket.OPEN) this.sendPing(socket);
    this.deadTimer = setTimeout(() => this.giveUp(socket), this.timeoutMs);
  }

  sendPing(socket) {
    if (!socket || socket !== this.socket || socket.readyState !== WebSocket.OPEN) return;
    if (this.samplesWanted > 0) this.samplesWanted -= 1;
    this.pingsOut.push(performance.now());
    socket.send(JSON.stringify({ type: 'ping' }));
  }

  // Nothing heard, not even the pong: the line is dead though the socket says open. It is let
  // go and another one opened, as after any drop; the page says it is reconnecting meanwhile.
  giveUp(socket) {
    if (socket !== this.socket || this.stopped) return;
    this.letGo(socket, 'no answer');
    this.retry(false);
  }

  stopWatching() {
    clearTimeout(this.quietTimer);
    clearTimeout(this.deadTimer);
    this.quietTimer = null;
    this.deadTimer = null;
  }

  closed(socket, event) {
    if (socket !== this.socket || this.stopped) return;
    this.stopWatching();
    if (ENDED[event.code]) {
      this.stop();
      window.dispatchEvent(new CustomEvent(LOGIN_ENDED_EVENT, { detail: ENDED[event.code] }));
      return;
    }
    if (event.code === POLICY && /token/.test(event.reason || '')) {
      // The login was renewed since this socket's hello (shared/login.js): the old token's
      // expiry ends the socket, not the login. Another, with the renewed token, resumes at once.
      const held = this.options.token();
      if (held && held !== socket.helloToken) {
        this.attempt = 0;
        clearTimeout(this.timer);
        this.connect();
        return;
      }
      this.options.onAuthFailed();
      return;
    }
    this.retry(event.code === RESTART);
  }

  retry(restarting) {
    this.attempt += 1;
    const offline = navigator.onLine === false;
    this.status(offline ? 'offline' : 'reconnecting');
    // A restarting server (1012) comes back quickly; otherwise back off, randomised, from
    // 0.5 s up to 5 s (docs/delivery.md): a phone on a flaky line must not sit out a tier's
    // 1-minute clock waiting to retry, and the jitter still spreads a town's reconnects.
    const base = restarting ? 500 : Math.min(5000, 500 * Math.pow(2, this.attempt));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  status(state) {
    this.options.onStatus(state, this.attempt);
  }
}

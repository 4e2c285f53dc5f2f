// Sounds made with Web Audio (no audio files), and vibration where the browser has it.
// Browsers only start audio after a tap or click, so the context is unlocked on the first one.
let context = null;
const unlockListeners = [];

function audioContext() {
  if (context) return context;
  const Ctor = window.AudioContext || window.webkitAudioContext;
  if (!Ctor) return null;
  try {
    context = new Ctor();
  } catch (_) {
    context = null;
  }
  return context;
}

export function soundReady() {
  const ctx = audioContext();
  return !!ctx && ctx.state === 'running';
}

export function unlockOnGesture(onReady) {
  if (onReady) unlockListeners.push(onReady);
  const unlock = () => {
    unlock_();
    if (soundReady()) {
      document.removeEventListener('pointerdown', unlock, true);
      document.removeEventListener('keydown', unlock, true);
    }
  };
  document.addEventListener('pointerdown', unlock, true);
  document.addEventListener('keydown', unlock, true);
}

function unlock_() {
  const ctx = audioContext();
  if (!ctx) return Promise.resolve(false);
  const done = () => {
    for (const listener of unlockListeners) listener(ctx.state === 'running');
    return ctx.state === 'running';
  };
  if (ctx.state === 'running') return Promise.resolve(done());
  // Old WebKit resumes only with a sound started inside the gesture: play a silent one.
  tone(ctx, 440, ctx.currentTime, 0.01, 0.0001);
  return ctx.resume().then(done, done);
}

export function unlockNow() {
  return unlock_();
}

function tone(ctx, frequency, start, duration, volume) {
  const oscillator = ctx.createOscillator();
  const gain = ctx.createGain();
  oscillator.type = 'square';
  oscillator.frequency.setValueAtTime(frequency, start);
  gain.gain.setValueAtTime(volume, start);
  gain.gain.setValueAtTime(0.0001, start + duration);
  oscillator.connect(gain);
  gain.connect(ctx.destination);
  oscillator.start(start);
  oscillator.stop(start + duration + 0.02);
}

// A two-tone siren, about `seconds` long. Returns whether any sound could be played.
export function siren(seconds) {
  const ctx = audioContext();
  if (!ctx || ctx.state !== 'running') return false;
  const start = ctx.currentTime + 0.02;
  const steps = Math.max(2, Math.round(seconds / 0.25));
  for (let i = 0; i < steps; i += 1) {
    tone(ctx, i % 2 ? 660 : 880, start + i * 0.25, 0.22, 0.15);
  }
  return true;
}

// Short rising beeps for a new alert.
export function chime() {
  const ctx = audioContext();
  if (!ctx || ctx.state !== 'running') return false;
  const start = ctx.currentTime + 0.02;
  [660, 880, 1100].forEach((f, i) => tone(ctx, f, start + i * 0.18, 0.15, 0.2));
  return true;
}

// Browsers refuse (and log) vibration before the first tap or key on the page: until then the
// page's other cues (the screen, the chime once sound is on, the tab's title) have to do.
export function vibrate(pattern) {
  if (typeof navigator.vibrate !== 'function') return false;
  const activation = navigator.userActivation;
  if (activation && !activation.hasBeenActive) return false;
  try {
    return navigator.vibrate(pattern);
  } catch (_) {
    return false;
  }
}

// Repeats `play` every `everyMs` until the returned stop() is called.
export function repeat(play, everyMs) {
  play();
  const timer = setInterval(play, everyMs);
  return () => clearInterval(timer);
}

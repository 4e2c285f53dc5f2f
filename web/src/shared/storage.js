// localStorage can throw (private mode, storage disabled in some in-app browsers): degrade to memory.
const memory = {};

export function load(key) {
  try {
    const value = window.localStorage.getItem(key);
    return value === null ? memory[key] ?? null : value;
  } catch (_) {
    return memory[key] ?? null;
  }
}

export function save(key, value) {
  memory[key] = value;
  try {
    window.localStorage.setItem(key, value);
  } catch (_) {
    // Memory keeps it for this page's life.
  }
}

export function remove(key) {
  delete memory[key];
  try {
    window.localStorage.removeItem(key);
  } catch (_) {
    // Nothing stored, nothing to remove.
  }
}

// For this tab alone, kept through a reload (sessionStorage), gone with the tab.
const tabMemory = {};

export function loadForTab(key) {
  try {
    const value = window.sessionStorage.getItem(key);
    return value === null ? tabMemory[key] ?? null : value;
  } catch (_) {
    return tabMemory[key] ?? null;
  }
}

export function saveForTab(key, value) {
  tabMemory[key] = value;
  try {
    window.sessionStorage.setItem(key, value);
  } catch (_) {
    // Full or disabled: memory keeps it for this page's life.
  }
}

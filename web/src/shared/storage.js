// The browser's storage can throw (private mode, storage disabled in some in-app browsers):
// each store then degrades to memory, which keeps what was saved for the page's life.
function store(area) {
  const memory = {};
  const unstored = {}; // keys whose last save the browser's storage refused
  return {
    load(key) {
      try {
        const value = window[area].getItem(key);
        return value === null ? memory[key] ?? null : value;
      } catch (_) {
        return memory[key] ?? null;
      }
    },
    // As another tab of the site may have left it: what the storage holds, removed included.
    // Memory's copy only where the storage could not take this page's own.
    loadShared(key) {
      try {
        const value = window[area].getItem(key);
        if (value !== null || !unstored[key]) return value;
      } catch (_) {
        // Disabled: memory is all there is.
      }
      return memory[key] ?? null;
    },
    save(key, value) {
      memory[key] = value;
      try {
        window[area].setItem(key, value);
        delete unstored[key];
      } catch (_) {
        // Full or disabled: memory keeps it.
        unstored[key] = true;
      }
    },
    remove(key) {
      delete memory[key];
      delete unstored[key];
      try {
        window[area].removeItem(key);
      } catch (_) {
        // Nothing stored, nothing to remove.
      }
    },
  };
}

// Kept for the site across visits (localStorage).
const site = store('localStorage');
// For this tab alone, kept through a reload (sessionStorage), gone with the tab.
const tab = store('sessionStorage');

export const load = site.load;
export const loadShared = site.loadShared;
export const save = site.save;
export const remove = site.remove;
export const loadForTab = tab.load;
export const saveForTab = tab.save;
export const removeForTab = tab.remove;

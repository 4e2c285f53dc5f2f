// The browser's storage can throw (private mode, storage disabled in some in-app browsers):
// each store then degrades to memory, which keeps what was saved for the page's life.
function store(area) {
  const memory = {};
  return {
    load(key) {
      try {
        const value = window[area].getItem(key);
        return value === null ? memory[key] ?? null : value;
      } catch (_) {
        return memory[key] ?? null;
      }
    },
    save(key, value) {
      memory[key] = value;
      try {
        window[area].setItem(key, value);
      } catch (_) {
        // Full or disabled: memory keeps it.
      }
    },
    remove(key) {
      delete memory[key];
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
export const save = site.save;
export const remove = site.remove;
export const loadForTab = tab.load;
export const saveForTab = tab.save;
export const removeForTab = tab.remove;

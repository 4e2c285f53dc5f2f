// Lines for screen readers alone, each said once: the page's visible text may change far more
// often (a distance with every position reply, a banner rewritten as breaches add up, everything
// at a language switch) than a listener should hear it.
import { clear, h } from './dom.js';
import { onLangChange } from './i18n.js';

const regions = new Set();

// What was said is in the language of its moment: a language switch takes it out (a removal
// is not read), so that a reader going through the page finds none of it in the other one.
onLangChange(() => {
  for (const region of regions) clear(region);
});

// `region`: a visually hidden live region present since the page opened (polite or assertive by
// its own aria-live). Each line is an element of its own, added: the same words said again later
// (another breach worded alike) are said again, and lines said in the same moment all are. The
// lines said before are taken out first (a removal is not read), so that a reader going through
// the page does not find a pile of them.
export function announce(region, text) {
  if (!region || !text) return;
  regions.add(region);
  const now = Date.now();
  for (const line of Array.from(region.children)) {
    if (now - Number(line.dataset.at) > 1000) region.removeChild(line);
  }
  region.appendChild(h('p', { dataset: { at: String(now) }, text }));
}

// Snapshots of an incident can reach a page out of order (two server transactions may each read
// the incident before the other commits). Everything in an incident only moves forward — a tier
// leaves "pending" once, a hop's time is set once (or, for a delivery or accept the leader's
// arrival stood for, once implied and then once observed), dispatches are only added, a closed
// incident stays closed — so merging keeps the furthest state of every part, whatever the order.
function pickSet(incoming, old) {
  const merged = Object.assign({}, old, incoming);
  for (const key of Object.keys(old)) {
    if ((merged[key] === null || merged[key] === undefined) && old[key] !== null) {
      merged[key] = old[key];
    }
  }
  return merged;
}

function mergeTier(incoming, old) {
  if (!old) return incoming;
  const merged = pickSet(incoming, old);
  if (incoming.status === 'pending' && old.status !== 'pending') merged.status = old.status;
  merged.covered = incoming.covered || old.covered;
  return merged;
}

// The hops an arrival may imply, and how far one has come: none, implied, observed.
const IMPLIABLE = ['delivered', 'accepted'];

function hopStage(d, hop) {
  if (!d[hop + '_at']) return 0;
  return d[hop + '_implied'] ? 1 : 2;
}

function mergeHops(incoming, old) {
  const merged = pickSet(incoming, old);
  for (const hop of IMPLIABLE) {
    // An older snapshot's implied delivery never undoes the ack observed since.
    const from = hopStage(old, hop) > hopStage(incoming, hop) ? old : incoming;
    merged[hop + '_at'] = from[hop + '_at'] || null;
    merged[hop + '_implied'] = !!from[hop + '_implied'];
  }
  // Whether its alert reached nobody is known from its dispatch on: a view that does not say
  // it (a dispatches.updated of a hop) never takes it back.
  merged.nobody_alerted = !!(incoming.nobody_alerted || old.nobody_alerted);
  return merged;
}

export function mergeIncident(old, incoming) {
  if (!old || old.id !== incoming.id) return incoming;
  const merged = pickSet(incoming, old);
  if (old.status === 'closed') merged.status = 'closed';
  const oldTiers = new Map(old.chain.map((tier) => [tier.tier, tier]));
  merged.chain = incoming.chain.map((tier) => mergeTier(tier, oldTiers.get(tier.tier)));
  const oldDispatches = new Map(old.dispatches.map((d) => [d.id, d]));
  const seen = new Set();
  const dispatches = incoming.dispatches.map((d) => {
    seen.add(d.id);
    const before = oldDispatches.get(d.id);
    return before ? mergeHops(d, before) : d;
  });
  for (const d of old.dispatches) if (!seen.has(d.id)) dispatches.push(d);
  dispatches.sort((a, b) => a.tier - b.tier || a.distance_m - b.distance_m);
  merged.dispatches = dispatches;
  return merged;
}

// A `dispatches.updated` carries the dispatches whose hops moved (delivered, shown): each one is
// merged into the incident it belongs to like any snapshot, so an older one never undoes a newer
// state.
export function mergeDispatch(incident, dispatch) {
  const others = incident.dispatches.filter((d) => d.id !== dispatch.id);
  return mergeIncident(incident, { ...incident, dispatches: [...others, dispatch] });
}

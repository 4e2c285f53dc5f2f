// What went wrong, said in the page's language: an answer of the API ({"error", "detail",
// "field" or "fields"}, docs/api.md#errors) or a request that never reached the server.
// Known codes and fields get sentences of their own; anything else falls back to the server's
// detail. Call errorText when drawing, so that the words follow the language switch.
import { ApiError } from './api.js';
import { t } from './i18n.js';

// The input a field path names, by its last part ("location.lat" is the latitude).
const FIELDS = [
  'lon',
  'lat',
  'crs',
  'location',
  'category',
  'description',
  'from',
  'to',
  'tier',
  'team_id',
  'village_id',
  'username',
  'password',
  'body',
  'dispatch_id',
  'incident_id',
  'accuracy_m',
  'device_time',
  'note',
];

// The server's reason (Pydantic's or its own words) as one of ours, with what it carries.
const REASONS = [
  [/less than or equal to (-?[\d.]+)/, 'le'],
  [/greater than or equal to (-?[\d.]+)/, 'ge'],
  [/less than (-?[\d.]+)/, 'le'],
  [/greater than (-?[\d.]+)/, 'ge'],
  [/valid number|valid integer|unable to parse/i, 'number'],
  [/finite number/i, 'finite'],
  [/^Field required/i, 'required'],
  [/must lie within China/i, 'china'],
  [/period's start must be before its end/i, 'period'],
  [/^Input should be '/, 'choice'],
  [/should have at most (\d+) characters?/, 'too_long'],
  [/should have at least (\d+) characters?/, 'too_short'],
  // Invisible characters pasted in with a text (a bidirectional mark, an escape): named by code.
  [/contains a control character \((U\+[0-9A-F]+)\)/, 'control'],
  [/must not contain NUL/, 'control', 'U+0000'],
  // A character that shows nothing in a name (a zero-width space): two names would read alike.
  [/contains an invisible character \((U\+[0-9A-F]+)\)/, 'invisible'],
];

/** True when the request never got an answer: the network, not the server, failed. */
export function isNetworkError(error) {
  return !(error instanceof ApiError) || !error.status;
}

/** The error as a sentence in the current language. `context.login`: a failed login. */
export function errorText(error, context) {
  if (!error) return '';
  if (isNetworkError(error)) return t('error.network');
  const status = error.status;
  const body = error.body || {};
  const code = body.error;
  if (status === 401 && context && context.login) {
    // The right password of a disabled account: said so, or its user retries his password.
    return t(code === 'account_disabled' ? 'error.account_disabled' : 'error.login_wrong');
  }
  if (status === 401) return t('error.unauthorized');
  if (status === 403) return t('error.forbidden');
  if (status === 429) return t('error.rate_limited', { s: error.retryAfterS || body.retry_after_s || 1 });
  if (status === 503 || code === 'busy') return t('error.busy');
  if (status === 413) return t('error.too_large');
  if (status === 404 && body.field) return t('error.not_found', { field: fieldName(body.field) });
  if (status === 409 && /incident is closed/.test(error.detail || '')) return t('error.closed');
  if (status === 409 && /already dispatched/.test(error.detail || '')) {
    return t('error.already_dispatched');
  }
  if (status === 409 && /is off duty \((.*)\)$/.test(error.detail || '')) {
    return t('error.off_duty', { detail: /is off duty \((.*)\)$/.exec(error.detail)[1] });
  }
  if (status === 422 || status === 400) {
    const problems = fieldProblems(error, body);
    if (problems.length) return problems.map(problemText).join(t('error.sep'));
  }
  if (status >= 500) return t('error.server', { status });
  // A refusal we have no words for: said as one, in the page's language, with the server's reason.
  return t('error.refused', { status, detail: error.detail || '' });
}

// Every {field, message} the answer names: from `fields`, or `field` with its detail.
function fieldProblems(error, body) {
  if (Array.isArray(body.fields) && body.fields.length) {
    return body.fields.map((f) => ({ field: f.field, message: String(f.message || '') }));
  }
  if (body.field) {
    const detail = error.detail || '';
    const prefix = body.field + ': ';
    const message = detail.indexOf(prefix) === 0 ? detail.slice(prefix.length) : detail;
    return [{ field: body.field, message }];
  }
  return [];
}

function fieldName(path) {
  const last = String(path).split('.').pop();
  return FIELDS.indexOf(last) >= 0 ? t('field.' + last) : String(path);
}

function problemText(problem) {
  const field = fieldName(problem.field);
  for (const [pattern, reason, fixed] of REASONS) {
    const match = pattern.exec(problem.message);
    if (match) return t('error.field.' + reason, { field, n: fixed || match[1] });
  }
  // A reason we have no words for: the field named in ours, the reason in the server's.
  return t('error.field.other', { field, detail: problem.message });
}

/** An ApiError from a fetch reply that was not ok (for requests made without Api). */
export async function errorFromReply(reply) {
  let data = null;
  try {
    data = await reply.json();
  } catch (_) {
    data = null;
  }
  const detail = data && typeof data.detail === 'string' ? data.detail : reply.status + ' ' + reply.statusText;
  return new ApiError(reply.status, detail, null, data);
}

// What the list pages (/sessions, /admin) share: the JSON API call, the
// message area, the way back to the login page, and time formatting.

const CSRF_TOKEN = document.querySelector('meta[name="csrf-token"]')?.content || '';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call; resolves to its JSON (or null), or rejects with an ApiError.
 *  `accept`: statuses besides 2xx whose body is an answer (/readyz's 503);
 *  `body`: sent as JSON. State changes carry the page's CSRF token. */
export async function api(method, url, { accept = [], body } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (method !== 'GET' && CSRF_TOKEN) init.headers['X-CSRF-Token'] = CSRF_TOKEN;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, 'network_error', 'the server cannot be reached');
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      // Not JSON (a proxy's error page, say): the status line will do.
    }
  }
  if (!response.ok && !(accept.includes(response.status) && data)) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `HTTP ${response.status} ${response.statusText}`.trim());
  }
  return data;
}

export function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function relativeTime(ms, now) {
  const seconds = Math.max(0, Math.floor((now - ms) / 1000));
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** The login has ended (another tab logged out, it expired): log in again, then come back here. */
export function toLogin(loginUrl) {
  const url = new URL(loginUrl, window.location.href);
  url.searchParams.set('next', window.location.pathname + window.location.search);
  window.location.assign(url.href);
}

/** The page's message area: a failed refresh ('load') clears itself on the
 *  next good one; a failed action ('action') stays until the next action. */
export class MessageArea {
  constructor(box) {
    this.box = box;
    this.kind = null;
  }

  show(text, kind) {
    this.kind = kind;
    this.box.dataset.kind = kind;
    // Rewriting the same text would make screen readers announce it again.
    if (this.box.textContent !== text) this.box.textContent = text;
    this.box.hidden = false;
  }

  clear(kind) {
    if (this.kind === null || (kind && kind !== this.kind)) return;
    this.kind = null;
    this.box.hidden = true;
    this.box.textContent = '';
  }
}

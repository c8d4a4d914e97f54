// The session list page (/sessions): the user's terminals, refreshed from
// the REST API every few seconds, with Open, End and New terminal.
//
// Hooks for tests: each row is <tr data-session-id>, its status cell has
// data-status, the list is in #sessions, and <body data-loaded="true"> is set
// after the first successful load.

const REFRESH_MS = 5000;
const SHORT_ID_LENGTH = 8;
const TITLE = 'Terminals · termweb';

const API = document.body.dataset.api || '/api/sessions';

const heading = document.querySelector('h1');
const section = document.getElementById('sessions');
const loading = document.getElementById('loading');
const table = document.getElementById('sessions-table');
const tbody = table.tBodies[0];
const emptyState = document.getElementById('empty');
const headerNewButton = document.getElementById('new-terminal');
const messageBox = document.getElementById('message');
const rowTemplate = document.getElementById('session-row');

const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortTime = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const shortDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call; resolves to {response, data} or rejects with an ApiError. */
async function api(method, url, body) {
  const init = { method, headers: { Accept: 'application/json' }, cache: 'no-store' };
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
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || `http_${response.status}`,
      error.message || `HTTP ${response.status} ${response.statusText}`.trim());
  }
  return { response, data };
}

/** Why a call failed, as the end of a sentence. */
function reason(error) {
  switch (error.code) {
    case 'store_unavailable': return 'the session store is unavailable';
    case 'backend_unavailable': return 'the terminal backend (tmux) is unavailable';
    case 'network_error': return 'the server cannot be reached';
    default: return error.message || String(error);
  }
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// -- the message area: a failed refresh ('load') clears itself on the next
// good one; a failed action ('action') stays until the next action.

let messageKind = null;

function showMessage(text, kind) {
  messageKind = kind;
  messageBox.dataset.kind = kind;
  // Rewriting the same text would make screen readers announce it again.
  if (messageBox.textContent !== text) messageBox.textContent = text;
  messageBox.hidden = false;
}

function clearMessage(kind) {
  if (messageKind === null || (kind && kind !== messageKind)) return;
  messageKind = null;
  messageBox.hidden = true;
  messageBox.textContent = '';
}

function failed(error, kind, text) {
  if (!(error instanceof ApiError)) {
    // A bug of this page, not a server answer: say so and report it.
    showMessage(`Something went wrong: ${error.message || error}`, kind);
    if (window.reportError) window.reportError(error);
    else console.error(error);
    return;
  }
  showMessage(text, kind);
}

// -- formatting

function shortId(sessionId) {
  return sessionId.slice(0, SHORT_ID_LENGTH);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago". */
function relativeTime(ms, now) {
  const seconds = Math.max(0, Math.floor((now - ms) / 1000));
  if (seconds < 1) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

/** A time of today as "14:03", an older one with its date. */
function clockTime(ms, now) {
  const date = new Date(ms);
  return date.toDateString() === new Date(now).toDateString()
    ? shortTime.format(date) : shortDateTime.format(date);
}

function setTime(element, ms, text) {
  const date = new Date(ms);
  element.dateTime = date.toISOString();
  element.title = fullTime.format(date);
  element.textContent = text;
}

// -- the table

function createRow(sessionId) {
  const row = rowTemplate.content.firstElementChild.cloneNode(true);
  row.dataset.sessionId = sessionId;
  const label = `terminal ${shortId(sessionId)}`;
  row.querySelector('[data-action="open"]').setAttribute('aria-label', `Open ${label}`);
  row.querySelector('[data-action="end"]').setAttribute('aria-label', `End ${label}`);
  return row;
}

function updateRow(row, session, now) {
  const id = row.querySelector('.session-id code');
  id.textContent = shortId(session.sessionId);
  id.title = session.sessionId;

  const state = row.querySelector('.state');
  state.dataset.status = session.status;
  state.firstElementChild.textContent = session.status;

  setTime(row.querySelector('.activity time'), session.lastActivity,
    relativeTime(session.lastActivity, now));
  row.querySelector('.connections').textContent = String(session.connectionCount);

  const cwd = row.querySelector('.cwd span');
  cwd.textContent = session.workingDirectory;
  cwd.title = session.workingDirectory;

  setTime(row.querySelector('.created time'), session.createdAt, clockTime(session.createdAt, now));
  row.querySelector('[data-action="open"]').href = session.url;
}

/** Show `sessions` in order, keeping the rows (and so the focus) of those already shown. */
function render(sessions) {
  const now = Date.now();
  const shown = new Map([...tbody.rows].map((row) => [row.dataset.sessionId, row]));
  sessions.forEach((session, index) => {
    let row = shown.get(session.sessionId);
    if (row) shown.delete(session.sessionId);
    else row = createRow(session.sessionId);
    updateRow(row, session, now);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] || null);
  });
  for (const row of shown.values()) row.remove();
  showCount();
}

function showCount() {
  const count = tbody.rows.length;
  loading.hidden = true;
  section.setAttribute('aria-busy', 'false');
  table.hidden = count === 0;
  emptyState.hidden = count !== 0;
  // The empty state has its own New terminal button.
  headerNewButton.hidden = count === 0;
  document.title = count ? `Terminals (${count}) · termweb` : TITLE;
}

/** Keyboard users keep their place when the focused element goes away. */
function keepFocus() {
  if (!document.activeElement || document.activeElement === document.body) heading.focus();
}

// -- refreshing

let timer = null;
let generation = 0;

async function refresh() {
  clearTimeout(timer);
  timer = null;
  const mine = ++generation;
  try {
    const { data } = await api('GET', API);
    if (mine !== generation) return;
    render(data.sessions);
    clearMessage('load');
    document.body.dataset.loaded = 'true';
  } catch (error) {
    if (mine !== generation) return;
    // The last list stays on show.
    failed(error, 'load', `${capitalize(reason(error))}; retrying…`);
  } finally {
    if (mine === generation) schedule();
  }
}

function schedule() {
  clearTimeout(timer);
  timer = document.hidden ? null : setTimeout(refresh, REFRESH_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
  } else {
    refresh();
  }
});

// -- actions

async function endSession(row, button) {
  const sessionId = row.dataset.sessionId;
  const label = `terminal ${shortId(sessionId)}`;
  if (!window.confirm(`End ${label}? The programs running in it will be stopped.`)) return;
  clearMessage('action');
  button.disabled = true;
  row.classList.add('ending');
  try {
    await api('DELETE', `${API}/${encodeURIComponent(sessionId)}`);
  } catch (error) {
    // Already gone is what was asked for.
    if (!(error instanceof ApiError && ['session_not_found', 'session_ended'].includes(error.code))) {
      button.disabled = false;
      row.classList.remove('ending');
      failed(error, 'action', `Could not end ${label}: ${reason(error)}.`);
      return;
    }
  }
  row.remove();
  showCount();
  keepFocus();
  refresh();
}

const newButtons = () => document.querySelectorAll('[data-action="new"]');

function setStarting(starting) {
  for (const button of newButtons()) {
    button.disabled = starting;
    button.setAttribute('aria-busy', String(starting));
  }
}

async function newTerminal() {
  clearMessage('action');
  setStarting(true);
  try {
    const { response, data } = await api('POST', API, {});
    window.location.assign(response.headers.get('Location') || data.session.url);
  } catch (error) {
    setStarting(false);
    failed(error, 'action', `Could not start a new terminal: ${reason(error)}.`);
  }
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || button.disabled) return;
  if (button.dataset.action === 'new') newTerminal();
  else if (button.dataset.action === 'end') endSession(button.closest('tr'), button);
});

// Back from a terminal: the page may come from the back/forward cache, with
// New terminal still disabled and the list as it was.
window.addEventListener('pageshow', (event) => {
  if (!event.persisted) return;
  setStarting(false);
  refresh();
});

refresh();

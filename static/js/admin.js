// The admin page (/admin): is the service ready, its tmux backends, and
// every user's running terminals, refreshed every few seconds from the same
// endpoints operators use (/readyz, /api/admin/backends, /api/sessions?all=1).
// An admin may end any terminal, but open (attach to) only their own.
//
// Backends are rendered defensively: fields a backend does not report show
// as "—", and fields this page does not know (a future pool's) are listed in
// a Details column, which shows only when there are some.
//
// Hooks for tests: backend rows are <tr data-backend-id>, session rows
// <tr data-session-id>; the readiness line is #readiness[data-ready]; and
// <body data-loaded="true"> is set once backends and sessions have loaded.
//
// "Scale the pool" (the form #scale) asks POST /api/admin/backends for a
// number of tmux servers; the servers beyond it drain (no new terminals) and
// stop once their last terminal ends.

import { ApiError, MessageArea, api, capitalize, relativeTime, toLogin } from './pagekit.js';

const REFRESH_MS = 5000;
const SHORT_ID_LENGTH = 8;
const TITLE = 'Admin · termweb';
const NONE = '—';

const BACKENDS_API = document.body.dataset.backends || '/api/admin/backends';
const SESSIONS_API = document.body.dataset.sessions || '/api/sessions';
const READYZ = document.body.dataset.readyz || '/readyz';
const ME_API = document.body.dataset.me || '/api/me';
const LOGIN_URL = document.body.dataset.login || null;
// Sent with every state-changing call (the server refuses them without it).

// The fields of a backend that have a column of their own.
const BACKEND_COLUMNS = new Set(['id', 'up', 'state', 'pid', 'sessions', 'capacity', 'warm',
  'probeSeconds', 'checkedAt', 'problem']);

const heading = document.querySelector('h1');
const messages = new MessageArea(document.getElementById('message'));
const readiness = document.getElementById('readiness');
const updated = document.getElementById('updated');
const refreshButton = document.getElementById('refresh');
const scaleForm = document.getElementById('scale');
const sizeInput = document.getElementById('pool-size');
const scaleButton = scaleForm.querySelector('button[type="submit"]');

const backendsPart = part('backends', 'backend-row');
const sessionsPart = part('sessions', 'session-row');

function part(id, templateId) {
  const section = document.getElementById(id);
  const table = section.querySelector('table');
  return {
    section,
    table,
    tbody: table.tBodies[0],
    loading: section.querySelector('.loading'),
    empty: section.querySelector('.empty'),
    count: section.querySelector('.count'),
    template: document.getElementById(templateId),
  };
}

const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clock = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

let me = document.body.dataset.user || null; // the admin's own user name
let backendIds = []; // the backends last shown, for the sessions' Backend column

/** Why a call failed, as the end of a sentence. */
function reason(error) {
  if (!(error instanceof ApiError)) return `something went wrong (${error.message || error})`;
  switch (error.code) {
    case 'store_unavailable': return 'the session store is unavailable';
    case 'backend_unavailable': return 'the terminal backend (tmux) is unavailable';
    case 'network_error': return 'the server cannot be reached';
    case 'forbidden': return 'this login is not an admin (any more)';
    default: return error.message || error.code;
  }
}

/** A bug of this page, not a server answer: report it too. */
function reportBug(error) {
  if (error instanceof ApiError) return;
  if (window.reportError) window.reportError(error);
  else console.error(error);
}

function loginEnded(error) {
  return error instanceof ApiError && error.status === 401 && LOGIN_URL;
}

// -- formatting

function shortId(id) {
  return id.length > SHORT_ID_LENGTH + 2 ? id.slice(0, SHORT_ID_LENGTH) : id;
}

const isNumber = (value) => typeof value === 'number' && Number.isFinite(value);

/** A <time> with a relative text and the full time as its title; "—" without a time. */
function setTime(element, ms, now) {
  if (!isNumber(ms)) {
    element.removeAttribute('datetime');
    element.removeAttribute('title');
    element.textContent = NONE;
    return;
  }
  const date = new Date(ms);
  element.dateTime = date.toISOString();
  element.title = fullTime.format(date);
  element.textContent = relativeTime(ms, now);
}

/** A probe's duration: "0.4 ms", "12 ms", "2.1 s". */
function duration(seconds) {
  if (!isNumber(seconds)) return NONE;
  const ms = seconds * 1000;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${seconds.toFixed(1)} s`;
}

/** Any JSON value, short enough for a table cell. */
function plain(value) {
  if (value === null || value === undefined || value === '') return NONE;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function setText(element, text, title) {
  element.textContent = text;
  if (title) element.title = title;
  else element.removeAttribute('title');
}

// -- rows kept across refreshes (and so the focus in them)

/** Show `items` in order in `p`'s table, keyed by `key(item)`, reusing rows. */
function renderRows(p, items, key, fill) {
  const shown = new Map([...p.tbody.rows].map((row) => [row.dataset.key, row]));
  items.forEach((item, index) => {
    const k = key(item, index);
    let row = shown.get(k);
    if (row) {
      shown.delete(k);
    } else {
      row = p.template.content.firstElementChild.cloneNode(true);
      row.dataset.key = k;
    }
    fill(row, item);
    if (p.tbody.rows[index] !== row) p.tbody.insertBefore(row, p.tbody.rows[index] || null);
  });
  for (const row of shown.values()) row.remove();
  showCount(p);
}

function showCount(p) {
  const count = p.tbody.rows.length;
  p.loading.hidden = true;
  p.section.setAttribute('aria-busy', 'false');
  p.table.hidden = count === 0;
  p.empty.hidden = count !== 0;
  p.count.textContent = `(${count})`;
}

// -- readiness

function renderReadiness(data) {
  const ready = data.ready === true;
  readiness.dataset.ready = String(ready);
  const problems = Array.isArray(data.problems) ? data.problems.filter(Boolean).map(String) : [];
  const text = ready ? 'Ready for new terminals'
    : `Not ready${problems.length ? `: ${problems.join('; ')}` : ''}`;
  const textElement = readiness.querySelector('.readiness-text');
  // The line is a live region: only a change is announced.
  if (textElement.textContent !== text) textElement.textContent = text;
  document.title = ready ? TITLE : `Not ready · ${TITLE}`;
}

// -- backends

function backendKey(backend, index) {
  return backend.id != null ? `id:${backend.id}` : `index:${index}`;
}

function fillBackend(row, backend) {
  const now = Date.now();
  const id = backend.id != null ? String(backend.id) : '(unnamed)';
  row.dataset.backendId = id;

  setText(row.querySelector('.backend-id code'), id);

  // Up or down, and beside it a pool's state other than the usual "active" (draining, …).
  const state = row.querySelector('.state');
  const up = backend.up === true ? 'up' : backend.up === false ? 'down' : 'unknown';
  state.dataset.up = typeof backend.up === 'boolean' ? String(backend.up) : 'unknown';
  state.dataset.state = backend.state != null ? String(backend.state) : '';
  const badges = [badge(up, 'up')];
  if (backend.state != null && backend.state !== '' && backend.state !== 'active') {
    badges.push(badge(String(backend.state), 'state'));
  }
  state.replaceChildren(...badges);

  row.querySelector('.pid').textContent = isNumber(backend.pid) ? String(backend.pid) : NONE;

  const load = row.querySelector('.load');
  const sessions = isNumber(backend.sessions) ? backend.sessions : null;
  const capacity = isNumber(backend.capacity) && backend.capacity > 0 ? backend.capacity : null;
  const bar = load.querySelector('.load-bar');
  const loadText = load.querySelector('.load-text');
  if (sessions !== null && capacity !== null) {
    const share = sessions / capacity;
    const percent = Math.min(100, share * 100);
    bar.hidden = false;
    load.dataset.level = share >= 1 ? 'full' : share >= 0.8 ? 'high' : 'ok';
    bar.firstElementChild.style.width = `${sessions > 0 ? Math.max(percent, 2) : 0}%`;
    setText(loadText, `${sessions} / ${capacity}`,
      `${sessions} of at most ${capacity} sessions (${Math.round(share * 100)}%)`);
  } else {
    bar.hidden = true;
    delete load.dataset.level;
    setText(loadText, sessions !== null ? String(sessions) : NONE);
  }

  row.querySelector('.warm').textContent = plain(backend.warm);
  row.querySelector('.probe').textContent = duration(backend.probeSeconds);
  setTime(row.querySelector('.checked time'), backend.checkedAt, now);

  const problem = row.querySelector('.problem span');
  const problemText = backend.problem ? String(backend.problem) : '';
  setText(problem, problemText, problemText);

  const extras = Object.entries(backend).filter(([name]) => !BACKEND_COLUMNS.has(name));
  const extra = row.querySelector('.extra');
  extra.replaceChildren(...extras.map(([name, value]) => {
    const item = document.createElement('span');
    item.className = 'extra-item';
    const label = document.createElement('span');
    label.className = 'extra-name';
    label.textContent = `${name}:`;
    item.append(label, ` ${plain(value)}`);
    return item;
  }));
  row.dataset.extras = String(extras.length);
}

function badge(text, kind) {
  const element = document.createElement('span');
  element.className = `badge badge-${kind}`;
  element.dataset.value = text;
  element.textContent = text;
  return element;
}

function renderBackends(backends) {
  const list = expectedStates(
    Array.isArray(backends) ? backends.filter((b) => b && typeof b === 'object') : []);
  renderRows(backendsPart, list, backendKey, fillBackend);
  const table = backendsPart.table;
  // Columns only a pool reports show once some backend has them.
  table.classList.toggle('has-warm', list.some((b) => b.warm !== undefined));
  table.classList.toggle('has-extra', [...backendsPart.tbody.rows].some((r) => r.dataset.extras !== '0'));
  backendIds = list.map((b) => b.id).filter((id) => id != null).map(String);
  showPoolSize(list);
}

// -- scaling the pool

// The states a scale has just given the backends (id -> "active" | "draining"),
// shown until the server's data agrees or the backend is gone: until each
// worker's next probe, the server still reports a backend's state from before
// the scale, and an empty backend may be stopped in the very round that
// would first report it draining.
const EXPECTED_FOR_MS = 30000;
let expected = new Map();
let expectedUntil = 0;

/** After a scale to `size`: the pool lists its backends in order, and keeps the first `size`. */
function expectScale(backends, size) {
  expected = new Map();
  if (!Array.isArray(backends)) return;
  backends.forEach((backend, index) => {
    if (backend && backend.id != null) expected.set(String(backend.id), index < size ? 'active' : 'draining');
  });
  expectedUntil = Date.now() + EXPECTED_FOR_MS;
}

function expectedStates(list) {
  if (expected.size === 0) return list;
  if (Date.now() > expectedUntil) {
    expected.clear();
    return list;
  }
  const present = new Set(list.map((b) => String(b.id)));
  for (const id of expected.keys()) if (!present.has(id)) expected.delete(id);
  return list.map((backend) => {
    const id = String(backend.id);
    const state = expected.get(id);
    if (state === undefined) return backend;
    if (backend.state === state) {
      expected.delete(id);
      return backend;
    }
    return { ...backend, state };
  });
}

let sizeEdited = false; // typed into since the last refresh
let scaling = false;

/** The input follows the pool, but never under the admin's fingers. */
function showPoolSize(list) {
  const size = list.filter((b) => b.state !== 'draining').length;
  if (size > 0 && !sizeEdited && document.activeElement !== sizeInput) sizeInput.value = String(size);
  sizeEdited = false;
  sizeInput.disabled = false;
  scaleButton.disabled = scaling;
}

async function scalePool() {
  if (scaling) return;
  // Not a number (empty, say) goes as null: the server says what it takes.
  const size = Number.isFinite(sizeInput.valueAsNumber) ? sizeInput.valueAsNumber : null;
  messages.clear('action');
  scaling = true;
  scaleButton.disabled = true;
  scaleForm.setAttribute('aria-busy', 'true');
  let data;
  try {
    data = await api('POST', BACKENDS_API, { body: { size } });
  } catch (error) {
    if (loginEnded(error)) {
      toLogin(LOGIN_URL);
      return;
    }
    reportBug(error);
    messages.show(`Could not scale the pool: ${reason(error)}.`, 'action');
    return;
  } finally {
    scaling = false;
    scaleButton.disabled = false;
    scaleForm.setAttribute('aria-busy', 'false');
  }
  // The answer lists the backends: show it at once (an empty draining one
  // may be gone by the next refresh), then refresh everything.
  if (Array.isArray(data?.backends)) {
    expectScale(data.backends, size);
    sizeEdited = false;
    try {
      renderBackends(data.backends);
    } catch (error) {
      reportBug(error);
    }
  }
  refresh();
}

scaleForm.addEventListener('submit', (event) => {
  event.preventDefault();
  scalePool();
});

sizeInput.addEventListener('input', () => {
  sizeEdited = true;
});

// -- sessions

/** Admins may attach only to their own terminals. */
function mine(session) {
  return me !== null && session.userId === me;
}

function fillSession(row, session) {
  const now = Date.now();
  row.dataset.sessionId = session.sessionId;
  row.dataset.owner = session.userId ?? '';
  const label = `terminal ${shortId(session.sessionId)}`;
  const whose = mine(session) ? 'your' : `${session.userId ?? 'nobody'}'s`;

  setText(row.querySelector('.session-id code'), shortId(session.sessionId), session.sessionId);

  const owner = row.querySelector('.owner');
  owner.textContent = session.userId ?? NONE;
  if (mine(session)) {
    const you = document.createElement('span');
    you.className = 'you';
    you.textContent = '(you)';
    owner.append(' ', you);
  }

  const state = row.querySelector('.state');
  state.dataset.status = session.status ?? '';
  state.firstElementChild.textContent = session.status ?? NONE;

  setTime(row.querySelector('.activity time'), session.lastActivity, now);
  row.querySelector('.connections').textContent = plain(session.connectionCount);

  const cwd = row.querySelector('.cwd span');
  setText(cwd, plain(session.workingDirectory), session.workingDirectory || '');

  setText(row.querySelector('.backend code'), plain(session.backendId));

  const open = row.querySelector('[data-action="open"]');
  open.hidden = !mine(session) || !session.url;
  if (session.url) open.href = session.url;
  open.setAttribute('aria-label', `Open ${label}`);
  row.querySelector('[data-action="end"]').setAttribute('aria-label', `End ${whose} ${label}`);
}

function renderSessions(sessions) {
  const list = Array.isArray(sessions) ? sessions.filter((s) => s && s.sessionId) : [];
  renderRows(sessionsPart, list, (s) => s.sessionId, fillSession);
  // Which backend holds a session matters once there are several.
  const ids = new Set(backendIds);
  for (const s of list) if (s.backendId) ids.add(s.backendId);
  sessionsPart.table.classList.toggle('has-backends', ids.size > 1);
}

/** Keyboard users keep their place when the focused element goes away. */
function keepFocus() {
  if (!document.activeElement || document.activeElement === document.body) heading.focus();
}

// -- refreshing: the three calls in parallel; each part keeps its last data when its call fails

let timer = null;
let generation = 0;
const everLoaded = { backends: false, sessions: false };

async function whoAmI() {
  if (me !== null) return;
  try {
    const data = await api('GET', ME_API);
    me = data?.user?.name ?? null;
  } catch {
    // Not known this time: no Open links until it is.
  }
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  const current = ++generation;
  refreshButton.setAttribute('aria-busy', 'true');
  try {
    const [ready, backends, sessions] = await Promise.allSettled([
      api('GET', READYZ, { accept: [503] }),
      api('GET', BACKENDS_API),
      api('GET', `${SESSIONS_API}?all=1`),
      whoAmI(),
    ]);
    if (current !== generation) return;

    const failures = [];
    const take = (result, what, sectionElement, show) => {
      if (result.status === 'fulfilled') {
        try {
          show(result.value);
          if (sectionElement) delete sectionElement.dataset.stale;
          return;
        } catch (error) {
          result = { status: 'rejected', reason: error };
        }
      }
      if (sectionElement) sectionElement.dataset.stale = 'true';
      reportBug(result.reason);
      failures.push({ what, error: result.reason });
    };
    take(ready, 'readiness', null, (data) => renderReadiness(data));
    take(backends, 'the backends', backendsPart.section, (data) => {
      renderBackends(data.backends);
      everLoaded.backends = true;
    });
    take(sessions, 'the sessions', sessionsPart.section, (data) => {
      renderSessions(data.sessions);
      everLoaded.sessions = true;
    });

    if (failures.some((f) => loginEnded(f.error))) {
      toLogin(LOGIN_URL);
      return;
    }
    const readinessFailed = failures.some((f) => f.what === 'readiness');
    readiness.dataset.stale = String(readinessFailed);
    if (readinessFailed && readiness.dataset.ready === 'unknown') {
      readiness.querySelector('.readiness-text').textContent = 'Readiness unknown';
    }
    if (failures.length) {
      messages.show(failureText(failures), 'load');
    } else {
      messages.clear('load');
      showUpdated();
    }
    if (everLoaded.backends && everLoaded.sessions) document.body.dataset.loaded = 'true';
  } finally {
    if (current === generation) {
      refreshButton.setAttribute('aria-busy', 'false');
      schedule();
    }
  }
}

/** "Could not refresh the backends and the sessions: the server cannot be reached; showing … retrying…" */
function failureText(failures) {
  const reasons = [...new Set(failures.map((f) => reason(f.error)))];
  const whats = failures.map((f) => f.what);
  const list = (items) => (items.length > 1
    ? `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}` : items[0]);
  const what = reasons.length === 1
    ? `${list(whats)}: ${reasons[0]}`
    : list(failures.map((f) => `${f.what} (${reason(f.error)})`));
  const since = lastUpdate === null ? '' : `; showing what was loaded at ${clock.format(lastUpdate)}`;
  return `${capitalize(`could not refresh ${what}`)}${since}; retrying…`;
}

let lastUpdate = null;

function showUpdated() {
  lastUpdate = new Date();
  const time = updated.querySelector('time');
  time.dateTime = lastUpdate.toISOString();
  time.title = fullTime.format(lastUpdate);
  time.textContent = clock.format(lastUpdate);
  updated.hidden = false;
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

// -- ending a terminal (any user's)

async function endSession(row, button) {
  const sessionId = row.dataset.sessionId;
  const owner = row.dataset.owner;
  const label = `terminal ${shortId(sessionId)}`;
  const whose = owner === me ? 'your' : `${owner || 'an unknown user'}'s`;
  if (!window.confirm(`End ${whose} ${label}? The programs running in it will be stopped.`)) return;
  messages.clear('action');
  button.disabled = true;
  row.classList.add('ending');
  try {
    await api('DELETE', `${SESSIONS_API}/${encodeURIComponent(sessionId)}`);
  } catch (error) {
    if (loginEnded(error)) {
      toLogin(LOGIN_URL);
      return;
    }
    // Already gone is what was asked for.
    if (!(error instanceof ApiError && ['session_not_found', 'session_ended'].includes(error.code))) {
      button.disabled = false;
      row.classList.remove('ending');
      reportBug(error);
      messages.show(`Could not end ${whose} ${label}: ${reason(error)}.`, 'action');
      return;
    }
  }
  row.remove();
  showCount(sessionsPart);
  keepFocus();
  refresh();
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || button.disabled) return;
  switch (button.dataset.action) {
    case 'end': endSession(button.closest('tr'), button); break;
    case 'refresh': refresh(); break;
    default: break;
  }
});

// Back from a terminal: the page may come from the back/forward cache with old data.
window.addEventListener('pageshow', (event) => {
  if (event.persisted) refresh();
});

refresh();

// The session list page (/sessions): the user's terminals, refreshed from
// the REST API every few seconds, with Open, End and New terminal; when
// logged in, Share (read-only view links, listed and revoked in a dialog),
// and for an admin an "All users" view with an Owner column.
//
// Hooks for tests: each row is <tr data-session-id>, its status cell has
// data-status, the list is in #sessions, and <body data-loaded="true"> is set
// after the first successful load.

import { ApiError, MessageArea, api, capitalize, relativeTime, toLogin } from './pagekit.js';

const REFRESH_MS = 5000;
const SHORT_ID_LENGTH = 8;
const TITLE = 'Terminals · termweb';
const COPIED_MS = 2000;

const API = document.body.dataset.api || '/api/sessions';
const SHARES = document.body.dataset.shares === 'true';
const LOGIN_URL = document.body.dataset.login || null;
const ME = document.body.dataset.user || null;
// Sent with every state-changing call (the server refuses them without it).
const heading = document.querySelector('h1');
const section = document.getElementById('sessions');
const loading = document.getElementById('loading');
const table = document.getElementById('sessions-table');
const tbody = table.tBodies[0];
const emptyState = document.getElementById('empty');
const headerNewButton = document.getElementById('new-terminal');
const messages = new MessageArea(document.getElementById('message'));
const rowTemplate = document.getElementById('session-row');
const allUsersToggle = document.getElementById('all-users'); // admins only

const fullTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortTime = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const shortDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** Why a call failed, as the end of a sentence. */
function reason(error) {
  switch (error.code) {
    case 'store_unavailable': return 'the session store is unavailable';
    case 'backend_unavailable': return 'the terminal backend (tmux) is unavailable';
    case 'network_error': return 'the server cannot be reached';
    default: return error.message || String(error);
  }
}

function failed(error, kind, text) {
  if (error instanceof ApiError && error.status === 401 && LOGIN_URL) {
    toLogin(LOGIN_URL);
    return;
  }
  if (!(error instanceof ApiError)) {
    // A bug of this page, not a server answer: say so and report it.
    messages.show(`Something went wrong: ${error.message || error}`, kind);
    if (window.reportError) window.reportError(error);
    else console.error(error);
    return;
  }
  messages.show(text, kind);
}

// -- formatting

function shortId(sessionId) {
  return sessionId.slice(0, SHORT_ID_LENGTH);
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
  row.querySelector('[data-action="share"]')?.setAttribute('aria-label', `Share ${label}`);
  return row;
}

/** Share links are the owner's to make: an admin's list of every user's terminals has none on others' rows. */
function mine(session) {
  return !session.userId || !ME || session.userId === ME;
}

function updateRow(row, session, now) {
  const id = row.querySelector('.session-id code');
  id.textContent = shortId(session.sessionId);
  id.title = session.sessionId;
  row.querySelector('.owner').textContent = session.userId ?? '';
  // Share starts hidden: shown (with its count of links) once the row is known to be the user's.
  const share = row.querySelector('[data-action="share"]');
  if (share?.hidden && mine(session)) {
    share.hidden = false;
    loadShareCount(row);
  }

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

/** Admins may list every user's terminals (the page's own ?all=1 keeps that over a reload). */
function listingAll() {
  return Boolean(allUsersToggle?.checked);
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  const mine = ++generation;
  try {
    const data = await api('GET', listingAll() ? `${API}?all=1` : API);
    if (mine !== generation) return;
    render(data.sessions);
    messages.clear('load');
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
  messages.clear('action');
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
  messages.clear('action');
  setStarting(true);
  try {
    const data = await api('POST', API, { body: {} });
    window.location.assign(data.session.url);
  } catch (error) {
    setStarting(false);
    failed(error, 'action', `Could not start a new terminal: ${reason(error)}.`);
  }
}

// -- share links: read-only views of a terminal, made, listed and revoked in a dialog

const shareDialog = document.getElementById('share-dialog');
const shareItemTemplate = document.getElementById('share-item');
let shareSession = null; // the session the dialog is about
let newShareId = null; // the link the dialog shows

function sharesUrl(sessionId, shareId) {
  const base = `${API}/${encodeURIComponent(sessionId)}/shares`;
  return shareId === undefined ? base : `${base}/${encodeURIComponent(shareId)}`;
}

function rowOf(sessionId) {
  return [...tbody.rows].find((row) => row.dataset.sessionId === sessionId) || null;
}

/** The row's "N links" button, which opens the list without making a new link. */
function showShareCount(row, count) {
  const button = row?.querySelector('[data-action="shares"]');
  if (!button) return;
  button.hidden = !count;
  button.textContent = count === 1 ? '1 link' : `${count} links`;
  button.setAttribute('aria-label',
    `${count} active view ${count === 1 ? 'link' : 'links'} of terminal ${shortId(row.dataset.sessionId)}`);
}

async function loadShareCount(row) {
  try {
    const data = await api('GET', sharesUrl(row.dataset.sessionId));
    showShareCount(row, data.shares.length);
  } catch {
    // Not known (someone else's terminal, a store hiccup): no count shown.
  }
}

function shareMessage(text) {
  const box = shareDialog.querySelector('.share-message');
  box.textContent = text || '';
  box.hidden = !text;
}

function shareFailed(error, text) {
  if (error instanceof ApiError && error.status === 401 && LOGIN_URL) {
    toLogin(LOGIN_URL);
    return;
  }
  if (!(error instanceof ApiError)) {
    if (window.reportError) window.reportError(error);
    else console.error(error);
  }
  shareMessage(text);
}

function renderShares(sessionId, shares) {
  const list = shareDialog.querySelector('.share-list');
  const now = Date.now();
  list.replaceChildren(...shares.map((share) => {
    const item = shareItemTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.shareId = share.id;
    setTime(item.querySelector('time'), share.createdAt,
      `${clockTime(share.createdAt, now)} (${relativeTime(share.createdAt, now)})`);
    item.querySelector('.share-this').hidden = share.id !== newShareId;
    item.querySelector('[data-action="revoke"]').setAttribute('aria-label',
      `Revoke the link created ${clockTime(share.createdAt, now)}${share.id === newShareId ? ' (the link above)' : ''}`);
    return item;
  }));
  showSharesTotal(sessionId, shares.length);
}

function showSharesTotal(sessionId, count) {
  shareDialog.querySelector('.share-count').textContent = String(count);
  shareDialog.querySelector('.share-none').hidden = count !== 0;
  showShareCount(rowOf(sessionId), count);
}

async function loadShares(sessionId) {
  try {
    const data = await api('GET', sharesUrl(sessionId));
    if (shareSession === sessionId) renderShares(sessionId, data.shares);
  } catch (error) {
    if (shareSession === sessionId) shareFailed(error, `Could not list the links: ${reason(error)}.`);
  }
}

/** Open the dialog for a row's terminal; `create` makes a new link first (Share), else only lists them. */
async function openShares(row, { create }) {
  const sessionId = row.dataset.sessionId;
  shareSession = sessionId;
  newShareId = null;
  const code = shareDialog.querySelector('#share-title code');
  code.textContent = shortId(sessionId);
  code.title = sessionId;
  shareDialog.querySelector('.share-new').hidden = true;
  shareDialog.querySelector('.share-creating').hidden = !create;
  shareDialog.querySelector('.share-list').replaceChildren();
  shareDialog.querySelector('.share-none').hidden = true;
  shareDialog.querySelector('.share-count').textContent = '…';
  shareMessage(null);
  shareDialog.showModal();
  if (create) {
    try {
      const data = await api('POST', sharesUrl(sessionId), { body: {} });
      if (shareSession !== sessionId) return;
      newShareId = data.share.id;
      showNewLink(new URL(data.share.url, window.location.origin).href);
    } catch (error) {
      if (shareSession === sessionId) shareFailed(error, `Could not create a link: ${reason(error)}.`);
    } finally {
      if (shareSession === sessionId) shareDialog.querySelector('.share-creating').hidden = true;
    }
  }
  if (shareSession === sessionId) await loadShares(sessionId);
}

function showNewLink(url) {
  const input = shareDialog.querySelector('#share-url');
  input.value = url;
  shareDialog.querySelector('.share-new').hidden = false;
  input.focus();
  input.select();
}

async function copyLink(button) {
  const input = shareDialog.querySelector('#share-url');
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    // No clipboard API here (a plain-http address that is not localhost): the old way.
    input.focus();
    input.select();
    if (!document.execCommand('copy')) {
      shareMessage('Could not copy: select the link and copy it yourself.');
      return;
    }
  }
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = 'Copy'; }, COPIED_MS);
}

async function revokeShare(item, button) {
  const sessionId = shareSession;
  const shareId = item.dataset.shareId;
  shareMessage(null);
  button.disabled = true;
  try {
    await api('DELETE', sharesUrl(sessionId, shareId));
  } catch (error) {
    // Already gone is what was asked for.
    if (!(error instanceof ApiError && error.status === 404)) {
      button.disabled = false;
      shareFailed(error, `Could not revoke the link: ${reason(error)}.`);
      return;
    }
  }
  if (shareSession !== sessionId) return;
  if (shareId === newShareId) {
    newShareId = null;
    shareDialog.querySelector('.share-new').hidden = true;
  }
  const list = item.parentElement;
  const next = item.nextElementSibling || item.previousElementSibling;
  item.remove();
  showSharesTotal(sessionId, list.children.length);
  (next?.querySelector('button') || shareDialog.querySelector('.dialog-actions button')).focus();
}

shareDialog?.addEventListener('close', () => {
  shareSession = null;
  newShareId = null;
  shareDialog.querySelector('#share-url').value = '';
  // The browser puts the focus back where it was (the row's button); one
  // that went away in the meantime leaves the heading.
  setTimeout(keepFocus);
});

// -- all users (admins)

function showAllUsers() {
  table.classList.toggle('all-users', listingAll());
  const caption = document.getElementById('sessions-caption');
  caption.textContent = listingAll() ? "Every user's terminals" : 'Your terminals';
}

if (allUsersToggle) {
  allUsersToggle.checked = new URL(window.location.href).searchParams.get('all') === '1';
  showAllUsers();
  allUsersToggle.addEventListener('change', () => {
    const url = new URL(window.location.href);
    if (listingAll()) url.searchParams.set('all', '1');
    else url.searchParams.delete('all');
    window.history.replaceState(window.history.state, '', url.href);
    showAllUsers();
    tbody.replaceChildren(); // other rows, other owners
    loading.hidden = false;
    section.setAttribute('aria-busy', 'true');
    refresh();
  });
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-action]');
  if (!button || button.disabled) return;
  switch (button.dataset.action) {
    case 'new': newTerminal(); break;
    case 'end': endSession(button.closest('tr'), button); break;
    case 'share': openShares(button.closest('tr'), { create: true }); break;
    case 'shares': openShares(button.closest('tr'), { create: false }); break;
    case 'copy': copyLink(button); break;
    case 'revoke': revokeShare(button.closest('li'), button); break;
    default: break;
  }
});

// Back from a terminal: the page may come from the back/forward cache, with
// New terminal still disabled and the list as it was.
window.addEventListener('pageshow', (event) => {
  if (!event.persisted) return;
  setStarting(false);
  refresh();
});

refresh();

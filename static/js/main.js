// Wires the terminal, the connection and the page's bits of UI together.
//
// The page is also the viewer of a read-only share link (/view/<token>,
// <body data-viewer="true">): it watches that link's terminal, sends no
// input and no resize, and keeps its own URL.

import { LINK_INVALID, LOGGED_OUT, TerminalConnection, answerStatus } from './connection.js';
import { ErrorCode } from './protocol.js';
import { SearchBox } from './search.js';
import { StatusIndicator } from './status.js';
import { bindKeys, createTerminal } from './terminal.js';

const RESIZE_DEBOUNCE_MS = 50;

const { dataset } = document.body;
const viewer = dataset.viewer === 'true';
// The app's root ("/", or a path prefix), where /ws, /api/me and /login are.
const root = new URL(dataset.root || '/', window.location.href).href;
const viewToken = viewer ? decodeURIComponent(window.location.pathname.split('/').pop()) : null;
const meUrl = new URL('api/me', root).href;

const status = new StatusIndicator(document.getElementById('status'), document.getElementById('toast'), {
  viewer, loginUrl: dataset.login || new URL('login', root).href,
});
const { term, fit, search, renderer } = createTerminal(document.getElementById('terminal'), { readOnly: viewer });
const searchBox = new SearchBox(document.getElementById('search'), term, search);
const encoder = new TextEncoder();
let toldReadOnly = false;

fit.fit();

const connection = new TerminalConnection({
  session: viewer ? null : new URL(window.location.href).searchParams.get('session'),
  view: viewToken,
  base: root,
  whyRefused,
  size: () => ({ cols: term.cols, rows: term.rows }),
  onOutput: (data) => term.write(data),
  onReady: ({ sessionId }) => {
    // Start from a clean slate: the server sends the session's history next,
    // then tmux redraws the screen, so a reattach shows exactly what the
    // session holds. CAN first ends an escape sequence a drop cut short;
    // RIS (ESC c) then resets the terminal and empties its scrollback. Both
    // go through write() so they land after output already queued.
    term.write('\x18\x1bc');
    rememberSession(sessionId);
    // A viewer watches at the size the handshake named and never resizes.
    if (!viewer) connection.sendResize(term.cols, term.rows, { force: true });
  },
  onState: (state) => status.show(state),
  onError: (error) => {
    // A viewer sends nothing the server would refuse as read-only; say it once if it happens.
    if (error.code === ErrorCode.READ_ONLY) {
      if (toldReadOnly) return;
      toldReadOnly = true;
    }
    status.toast(error.message || error.code);
  },
});

/**
 * A socket refused before it opened: final when the login has ended, or
 * (a viewer, who need not be logged in) when the share link is gone and its
 * page answers 404; null otherwise (the connection retries).
 */
async function whyRefused() {
  if (viewer) return await answerStatus(window.location.href, 'HEAD') === 404 ? LINK_INVALID : null;
  if (dataset.auth !== 'true') return null;
  return await answerStatus(meUrl) === 401 ? LOGGED_OUT : null;
}

/** Put ?session=<id> in the address bar, so a reload reattaches this terminal (not for a viewer). */
function rememberSession(sessionId) {
  if (!sessionId) return;
  document.body.dataset.session = sessionId;
  if (viewer) return;
  const url = new URL(window.location.href);
  if (url.searchParams.get('session') === sessionId) return;
  url.searchParams.set('session', sessionId);
  window.history.replaceState(window.history.state, '', url.href);
}

if (!viewer) {
  term.onData((text) => connection.sendBytes(encoder.encode(text)));
  // onBinary carries raw bytes (e.g. some mouse reports) one char per byte.
  term.onBinary((text) => connection.sendBytes(Uint8Array.from(text, (ch) => ch.charCodeAt(0) & 0xff)));
  term.onResize(({ cols, rows }) => connection.sendResize(cols, rows));
}
term.onTitleChange((title) => { document.title = title || 'termweb'; });
bindKeys(term, { f: () => searchBox.open() });

let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => fit.fit(), RESIZE_DEBOUNCE_MS);
});
// The first fit may have measured a fallback font.
document.fonts.ready.then(() => fit.fit());
window.addEventListener('online', () => connection.retryNow());
window.addEventListener('offline', () => connection.networkLost());

// A share link's page that says the link is gone (answered 404) does not try.
if (dataset.shareInvalid === 'true') status.show(LINK_INVALID);
else connection.connect();
term.focus();

window.termweb = {
  term,
  fit,
  search,
  renderer,
  connection,
  get sessionId() { return connection.sessionId; },
  disconnect: () => connection.disconnect(),
};

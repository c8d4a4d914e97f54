// Wires the terminal, the connection and the page's bits of UI together.

import { TerminalConnection } from './connection.js';
import { SearchBox } from './search.js';
import { StatusIndicator } from './status.js';
import { bindKeys, createTerminal } from './terminal.js';

const RESIZE_DEBOUNCE_MS = 50;

const status = new StatusIndicator(document.getElementById('status'), document.getElementById('toast'));
const { term, fit, search, renderer } = createTerminal(document.getElementById('terminal'));
const searchBox = new SearchBox(document.getElementById('search'), term, search);
const encoder = new TextEncoder();

fit.fit();

const connection = new TerminalConnection({
  session: new URL(window.location.href).searchParams.get('session'),
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
    connection.sendResize(term.cols, term.rows, { force: true });
  },
  onState: (state) => status.show(state),
  onError: (error) => status.toast(error.message || error.code),
});

/** Put ?session=<id> in the address bar, so a reload reattaches this terminal. */
function rememberSession(sessionId) {
  if (!sessionId) return;
  document.body.dataset.session = sessionId;
  const url = new URL(window.location.href);
  if (url.searchParams.get('session') === sessionId) return;
  url.searchParams.set('session', sessionId);
  window.history.replaceState(window.history.state, '', url.href);
}

term.onData((text) => connection.sendBytes(encoder.encode(text)));
// onBinary carries raw bytes (e.g. some mouse reports) one char per byte.
term.onBinary((text) => connection.sendBytes(Uint8Array.from(text, (ch) => ch.charCodeAt(0) & 0xff)));
term.onResize(({ cols, rows }) => connection.sendResize(cols, rows));
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

connection.connect();
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

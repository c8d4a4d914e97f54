// One terminal's WebSocket: connect, reattach the same session after a drop
// with jittered exponential backoff, and measure round trips with heartbeats.
// A socket refused before it opened (the browser is not told why) may mean
// the login has ended or a share link was revoked: the connection asks the
// page (`whyRefused`) before it tries again.

import {
  Action, CLOSING_ERROR_CODES, CloseCode, ErrorCode, FINAL_CLOSE_CODES, MessageType,
  controlMessage, decodeMessage, encodeMessage, socketUrl,
} from './protocol.js';

const BACKOFF_START_MS = 250;
const BACKOFF_CAP_MS = 10_000;
const HEARTBEAT_INTERVAL_MS = 5_000;
// A heartbeat unanswered this long means a half-open connection the browser
// has not noticed yet: drop it and reconnect rather than wait for TCP.
const HEARTBEAT_TIMEOUT_MS = 15_000;
// A connection that lived this long resets the backoff; a shorter one (a
// server that accepts and drops at once) keeps it growing.
const STABLE_MS = 10_000;

/** Delay before reconnect attempt `attempt` (0-based): "equal jitter" backoff. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * 2 ** attempt);
  return ceiling / 2 + random() * ceiling / 2;
}

function closeReason(code, serverReason) {
  if (serverReason) return serverReason;
  switch (code) {
    case CloseCode.NORMAL: return 'connection closed by the server';
    case CloseCode.POLICY: return 'the server stopped hearing from this page';
    case CloseCode.BAD_HANDSHAKE: return 'the server refused the connection';
    case CloseCode.FORBIDDEN: return 'this share link was revoked';
    case CloseCode.NOT_FOUND: return 'no such terminal session';
    default: return `connection lost (${code})`;
  }
}

/**
 * The status `url` answers (a HEAD or GET), or null when there is no answer.
 * Used to learn why a handshake was refused: 401 from /api/me means the
 * login ended, 404 from a share link's page that the link is gone.
 */
export async function answerStatus(url, method = 'GET') {
  try {
    const response = await fetch(url, {
      method, headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin',
    });
    return response.status;
  } catch {
    return null;
  }
}

export const LOGGED_OUT = Object.freeze({
  state: 'closed', reason: 'you are logged out', ended: false, loggedOut: true,
});
export const LINK_INVALID = Object.freeze({
  state: 'closed', reason: 'this share link is not valid, or was revoked', ended: true, revoked: true,
});

/**
 * States passed to `onState`:
 *   {state: 'connecting'}
 *   {state: 'connected', rttMs: number|null, waitingMs?: number}  (waitingMs: a heartbeat is overdue)
 *   {state: 'reconnecting', retryAt: ms on the performance.now() clock, reason: string|null}
 *   {state: 'closed', reason: string, ended: bool}  (ended: the session is gone)
 *   {state: 'closed', reason, ended: true, revoked: true}  (a share link that was revoked)
 *   {state: 'closed', reason, ended: false, loggedOut: true}  (the login has ended)
 */
export class TerminalConnection {
  /**
   * @param {object} options
   * @param {string|null} options.session  session id to attach first, or null for a new terminal
   * @param {string|null} [options.view]  a share link's token: watch its terminal, read-only
   *   (no input, no resize)
   * @param {string} [options.base]  the app's root URL (ends in '/'), where /ws is
   * @param {(() => Promise<object|null>)|null} [options.whyRefused]  asked when a socket is
   *   refused before it opens: a 'closed' state to stop with, or null to retry as usual
   * @param {() => {cols: number, rows: number}} options.size  current terminal size
   * @param {(data: Uint8Array|string) => void} options.onOutput  terminal output
   * @param {(ready: {sessionId: string, created: boolean, first: boolean}) => void} options.onReady
   * @param {(state: object) => void} options.onState
   * @param {(error: {code: string, message: string}) => void} options.onError
   *   errors that leave the socket open (the others come with the next state)
   */
  constructor({ session, view = null, base, whyRefused = null, size, onOutput, onReady, onState, onError }) {
    this.sessionId = session || null;
    this.viewToken = view || null;
    this.readOnly = Boolean(this.viewToken);
    this._base = base;
    this._whyRefused = whyRefused;
    this._refusalCheck = null; // the whyRefused() call in flight, if any
    this._size = size;
    this._onOutput = onOutput;
    this._onReady = onReady;
    this._onState = onState;
    this._onError = onError;
    this._socket = null;
    this._attempt = 0;
    this._readyCount = 0;
    this._readyAt = null;
    this._retryTimer = null;
    this._heartbeatTimer = null;
    this._heartbeatSentAt = null;
    this._lastRttMs = null;
    this._sentSize = null;
    // Per-socket facts: opened, the exit reason (false: none yet), the error
    // that explains the close, user closed.
    this._view = null;
  }

  connect() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._refusalCheck = null;
    const { cols, rows } = this._size();
    const socket = new WebSocket(socketUrl(window.location, {
      session: this.sessionId, view: this.viewToken, cols, rows, base: this._base,
    }));
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => { if (socket === this._socket) this._view.opened = true; };
    socket.onmessage = (event) => this._receive(event.data);
    socket.onclose = (event) => this._closed(socket, event.code, event.reason);
    this._socket = socket;
    this._sentSize = { cols, rows };
    this._view = { opened: false, exited: false, closingError: null, userClosed: false };
    this._onState({ state: 'connecting' });
  }

  /** Keystrokes and pastes, as a binary frame; dropped while not connected (and always when read-only). */
  sendBytes(bytes) {
    if (!this.readOnly && this._isOpen()) this._socket.send(bytes);
  }

  /** Tell the server the terminal's size, unless it already has it (never when read-only). */
  sendResize(cols, rows, { force = false } = {}) {
    if (this.readOnly || !this._isOpen()) return;
    if (!force && this._sentSize && this._sentSize.cols === cols && this._sentSize.rows === rows) return;
    this._sentSize = { cols, rows };
    this._socket.send(controlMessage(Action.RESIZE, { cols, rows }));
  }

  /** Close this view on purpose; the terminal keeps running and no reconnect follows. */
  disconnect() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._refusalCheck = null;
    if (this._isOpen()) {
      this._view.userClosed = true;
      this._socket.send(controlMessage(Action.DISCONNECT));
    } else {
      const socket = this._socket;
      this._detach();
      socket?.close();
      this._onState({ state: 'closed', reason: 'disconnected', ended: false });
    }
  }

  /** Skip the rest of a backoff wait (e.g. the network came back). */
  retryNow() {
    if (this._retryTimer !== null) this.connect();
  }

  /**
   * The browser says it is offline: give up on the socket now rather than
   * after the heartbeat timeout, and wait (with backoff) for the network.
   */
  networkLost() {
    if (this._isOpen()) this._drop('the browser went offline');
  }

  _isOpen() {
    return this._socket !== null && this._socket.readyState === WebSocket.OPEN;
  }

  _receive(data) {
    if (typeof data !== 'string') {
      this._onOutput(new Uint8Array(data));
      return;
    }
    const message = decodeMessage(data);
    if (message === null) return;
    const payload = message.payload ?? {};
    switch (message.type) {
      case MessageType.CONTROL:
        if (payload.action === Action.READY) this._ready(message.sessionId, payload);
        else if (payload.action === Action.EXIT) this._view.exited = payload.reason || 'no reason given';
        break;
      case MessageType.HEARTBEAT:
        this._heartbeatReply(payload);
        break;
      case MessageType.OUTPUT:
        if (typeof payload === 'string') this._onOutput(payload);
        break;
      case MessageType.ERROR:
        // An error that closes the socket is told with the state that follows.
        if (CLOSING_ERROR_CODES.has(payload.code)) this._view.closingError = payload;
        else this._onError(payload);
        break;
      default:
        break; // a newer server's message type: ignore it
    }
  }

  _ready(sessionId, payload) {
    this._readyAt = performance.now();
    this._readyCount += 1;
    if (sessionId) this.sessionId = sessionId;
    this._onState({ state: 'connected', rttMs: null });
    const first = this._readyCount === 1;
    this._onReady({ sessionId: this.sessionId, created: Boolean(payload.created), first });
    this._startHeartbeat();
  }

  _startHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatSentAt = null;
    this._heartbeat();
    this._heartbeatTimer = setInterval(() => this._heartbeat(), HEARTBEAT_INTERVAL_MS);
  }

  _heartbeat() {
    if (!this._isOpen()) return;
    const now = performance.now();
    if (this._heartbeatSentAt !== null) { // one heartbeat in flight at a time
      const waitingMs = now - this._heartbeatSentAt;
      if (waitingMs > HEARTBEAT_TIMEOUT_MS) this._drop();
      else this._onState({ state: 'connected', rttMs: null, waitingMs });
      return;
    }
    this._heartbeatSentAt = now;
    // The last round trip goes along, for the server's echo metrics.
    const payload = this._lastRttMs === null ? { clientTime: now } : { clientTime: now, rttMs: this._lastRttMs };
    this._socket.send(encodeMessage(MessageType.HEARTBEAT, payload));
  }

  _heartbeatReply(payload) {
    if (typeof payload.clientTime !== 'number') return;
    this._heartbeatSentAt = null;
    const rttMs = Math.max(0, performance.now() - payload.clientTime);
    this._lastRttMs = Math.round(rttMs * 1000) / 1000;
    this._onState({ state: 'connected', rttMs });
  }

  /** Give up on a silent socket now, as if the network had dropped it. */
  _drop(reason = 'no heartbeat reply') {
    const socket = this._socket;
    this._closed(socket, CloseCode.ABNORMAL, reason);
    socket.close();
  }

  _detach() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    if (this._socket !== null) {
      this._socket.onmessage = null;
      this._socket.onclose = null;
    }
    this._socket = null;
  }

  _closed(socket, code, serverReason) {
    if (socket !== this._socket) return;
    const view = this._view;
    this._detach();
    const error = view.closingError;
    const reason = error?.message || closeReason(code, serverReason);
    if (view.userClosed) {
      this._onState({ state: 'closed', reason: 'disconnected', ended: false });
    } else if (view.exited) {
      this._onState({ state: 'closed', reason: `session ended (${view.exited})`, ended: true });
    } else if (error?.code === ErrorCode.SHARE_REVOKED || code === CloseCode.FORBIDDEN) {
      this._onState({ state: 'closed', reason: closeReason(CloseCode.FORBIDDEN), ended: true, revoked: true });
    } else if (this._whyRefused && (!view.opened || error?.code === ErrorCode.UNAUTHORIZED)) {
      // A handshake refused before the upgrade (the browser sees only 1006),
      // or the server said the login ended: ask before trying again.
      this._checkRefusal(error?.message || serverReason || null);
    } else if (FINAL_CLOSE_CODES.has(code)) {
      this._onState({ state: 'closed', reason, ended: code === CloseCode.NOT_FOUND });
    } else {
      if (this._readyAt !== null && performance.now() - this._readyAt > STABLE_MS) this._attempt = 0;
      this._scheduleReconnect(view.closingError?.message || serverReason || null);
    }
    this._readyAt = null;
  }

  /** Stop for good when the refusal is final (logged out, link revoked); otherwise reconnect as usual. */
  _checkRefusal(reason) {
    const check = {};
    this._refusalCheck = check;
    this._whyRefused().catch(() => null).then((final) => {
      if (this._refusalCheck !== check) return; // connect() or disconnect() came first
      this._refusalCheck = null;
      if (final) this._onState(final);
      else this._scheduleReconnect(reason);
    });
  }

  _scheduleReconnect(reason) {
    const delay = backoffDelay(this._attempt);
    this._attempt += 1;
    this._retryTimer = setTimeout(() => this.connect(), delay);
    this._onState({ state: 'reconnecting', retryAt: performance.now() + delay, reason });
  }
}

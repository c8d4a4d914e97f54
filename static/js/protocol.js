// The wire protocol of docs/protocol.md, mirrored once from termweb/protocol.py.

export const MessageType = Object.freeze({
  CONTROL: 'control',
  HEARTBEAT: 'heartbeat',
  INPUT: 'input',
  COMMAND: 'command',
  OUTPUT: 'output',
  ERROR: 'error',
});

export const Action = Object.freeze({
  READY: 'ready',
  EXIT: 'exit',
  RESIZE: 'resize',
  INTERRUPT: 'interrupt',
  CLEAR: 'clear',
  DISCONNECT: 'disconnect',
});

export const ErrorCode = Object.freeze({
  INVALID_JSON: 'invalid_json',
  INVALID_MESSAGE: 'invalid_message',
  UNKNOWN_TYPE: 'unknown_type',
  UNKNOWN_ACTION: 'unknown_action',
  INVALID_FIELD: 'invalid_field',
  INVALID_SIZE: 'invalid_size',
  UNSUPPORTED: 'unsupported',
  INVALID_HANDSHAKE: 'invalid_handshake',
  SESSION_NOT_FOUND: 'session_not_found',
  SESSION_ENDED: 'session_ended',
  SESSION_LOST: 'session_lost',
  STORE_UNAVAILABLE: 'store_unavailable',
  SERVER_RESTARTING: 'server_restarting',
  TOO_MANY_TERMINALS: 'too_many_terminals',
  BACKEND_UNAVAILABLE: 'backend_unavailable',
  INTERNAL_ERROR: 'internal_error',
  RATE_LIMITED: 'rate_limited', // too many messages: the connection stays open
  READ_ONLY: 'read_only', // a viewer of a share link tried to type or resize
  SHARE_REVOKED: 'share_revoked', // the share link was revoked: close 4403
  UNAUTHORIZED: 'unauthorized', // the login ended
});

// Errors the server sends just before it closes the socket (see the Errors table).
export const CLOSING_ERROR_CODES = new Set([
  ErrorCode.INVALID_HANDSHAKE, ErrorCode.SESSION_NOT_FOUND, ErrorCode.SESSION_ENDED,
  ErrorCode.SESSION_LOST, ErrorCode.STORE_UNAVAILABLE, ErrorCode.SERVER_RESTARTING,
  ErrorCode.TOO_MANY_TERMINALS,
  ErrorCode.BACKEND_UNAVAILABLE, ErrorCode.INTERNAL_ERROR,
  ErrorCode.SHARE_REVOKED, ErrorCode.UNAUTHORIZED,
]);

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  ABNORMAL: 1006, // set by the browser when the connection dropped without a close frame
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  RESTART: 1012,
  TRY_AGAIN: 1013,
  BAD_HANDSHAKE: 4400,
  FORBIDDEN: 4403, // a share link that was revoked
  NOT_FOUND: 4404,
});

// Closes after which reconnecting cannot help; every other code reconnects
// (1008, a missed ping, is usually a laptop waking up: reconnecting is right).
export const FINAL_CLOSE_CODES = new Set([
  CloseCode.NORMAL, CloseCode.BAD_HANDSHAKE, CloseCode.FORBIDDEN, CloseCode.NOT_FOUND,
]);

export const MIN_COLS = 2;
export const MAX_COLS = 1000;
export const MIN_ROWS = 1;
export const MAX_ROWS = 1000;

/** One client TerminalMessage as a JSON text frame. */
export function encodeMessage(type, payload) {
  return JSON.stringify(payload === undefined ? { type } : { type, payload });
}

export function controlMessage(action, fields = {}) {
  return encodeMessage(MessageType.CONTROL, { action, ...fields });
}

/** Parse a server text frame; null when it is not a JSON object with a string type. */
export function decodeMessage(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (data === null || typeof data !== 'object' || typeof data.type !== 'string') return null;
  return data;
}

/**
 * The handshake URL: `ws` under the app's root (`base`, an absolute URL
 * ending in '/'; the page's own URL by default), wss: when the page is https:.
 * `view` is a share link's token: watch that link's terminal (no `session`).
 */
export function socketUrl(location, { session, view, cols, rows, base = location.href }) {
  // Relative, so the page also works when mounted under a path prefix.
  const url = new URL('ws', base);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (view) url.searchParams.set('view', view);
  else if (session) url.searchParams.set('session', session);
  url.searchParams.set('cols', String(clamp(cols, MIN_COLS, MAX_COLS)));
  url.searchParams.set('rows', String(clamp(rows, MIN_ROWS, MAX_ROWS)));
  return url.href;
}

export function clamp(value, low, high) {
  return Math.min(high, Math.max(low, Math.round(value)));
}

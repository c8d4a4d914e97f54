// The connection pill (top right) and the error toast. The state is also
// published on <body data-state> for tests and for CSS.

const TOAST_MS = 6000;

function connectedText({ rttMs, waitingMs }) {
  if (waitingMs) return `connected · no reply for ${Math.round(waitingMs / 1000)} s`;
  return rttMs == null ? 'connected' : `connected · ${Math.round(rttMs)} ms`;
}

function capitalize(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export class StatusIndicator {
  /**
   * @param {HTMLElement} pill  holds .status-text and the a.status-action links (retry, sessions, login)
   * @param {HTMLElement} toast
   * @param {object} [options]
   * @param {boolean} [options.viewer]  a share link's page: no new terminal, no list of terminals
   * @param {string} [options.loginUrl]  the login page
   */
  constructor(pill, toast, { viewer = false, loginUrl = '/login' } = {}) {
    this._pill = pill;
    this._text = pill.querySelector('.status-text');
    this._action = pill.querySelector('.status-action[data-role="retry"]');
    this._sessions = pill.querySelector('.status-action[data-role="sessions"]');
    this._login = pill.querySelector('.status-action[data-role="login"]');
    this._viewer = viewer;
    this._loginUrl = loginUrl;
    this._toast = toast;
    this._toastTimer = null;
    this._countdown = null;
  }

  /** Show one state from TerminalConnection's onState. */
  show(status) {
    clearInterval(this._countdown);
    this._countdown = null;
    document.body.dataset.state = status.state;
    this._action.hidden = true;
    this._sessions.hidden = true;
    if (this._login) this._login.hidden = true;
    this._pill.classList.toggle('stalled', Boolean(status.waitingMs));
    switch (status.state) {
      case 'connected':
        this._text.textContent = connectedText(status);
        break;
      case 'reconnecting':
        this._showCountdown(status.retryAt);
        if (status.reason) this.toast(status.reason);
        break;
      case 'closed':
        if (status.loggedOut) {
          this._text.textContent = 'You are logged out';
          this._showLogin();
          this._pill.querySelector('.status-user')?.remove(); // no longer anyone's
        } else if (status.revoked) {
          this._text.textContent = capitalize(status.reason);
        } else {
          this._text.textContent = `closed: ${status.reason}`;
          this._showAction(status.ended);
        }
        break;
      default:
        this._text.textContent = status.state;
    }
  }

  /** Show a message for a few seconds. */
  toast(message) {
    this._toast.textContent = message;
    this._toast.hidden = false;
    clearTimeout(this._toastTimer);
    this._toastTimer = setTimeout(() => { this._toast.hidden = true; }, TOAST_MS);
  }

  _showCountdown(retryAt) {
    const render = () => {
      const seconds = Math.max(1, Math.ceil((retryAt - performance.now()) / 1000));
      this._text.textContent = `reconnecting in ${seconds}s…`;
    };
    render();
    this._countdown = setInterval(render, 250);
  }

  /** "Log in", coming back to this page (and so this terminal) afterwards. */
  _showLogin() {
    if (!this._login) return;
    const url = new URL(this._loginUrl, window.location.href);
    url.searchParams.set('next', window.location.pathname + window.location.search);
    this._login.href = url.href;
    this._login.hidden = false;
  }

  // A session that ended offers a new terminal; any other close offers to
  // reattach the same one (a reload keeps ?session=). A viewer can only
  // reconnect to the terminal it watches.
  _showAction(ended) {
    if (this._viewer) {
      if (ended) return;
      this._action.href = window.location.href;
      this._action.textContent = 'reconnect';
      this._action.hidden = false;
      return;
    }
    const url = new URL(window.location.href);
    if (ended) url.searchParams.delete('session');
    this._action.href = url.href;
    this._action.textContent = ended ? 'new terminal' : 'reconnect';
    this._action.hidden = false;
    this._sessions.hidden = false;
  }
}

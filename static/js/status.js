// The connection pill (top right) and the error toast. The state is also
// published on <body data-state> for tests and for CSS.

const TOAST_MS = 6000;

function connectedText({ rttMs, waitingMs }) {
  if (waitingMs) return `connected · no reply for ${Math.round(waitingMs / 1000)} s`;
  return rttMs == null ? 'connected' : `connected · ${Math.round(rttMs)} ms`;
}

export class StatusIndicator {
  /**
   * @param {HTMLElement} pill  holds .status-text and the a.status-action links (retry, sessions)
   * @param {HTMLElement} toast
   */
  constructor(pill, toast) {
    this._pill = pill;
    this._text = pill.querySelector('.status-text');
    this._action = pill.querySelector('.status-action[data-role="retry"]');
    this._sessions = pill.querySelector('.status-action[data-role="sessions"]');
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
        this._text.textContent = `closed: ${status.reason}`;
        this._showAction(status.ended);
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

  // A session that ended offers a new terminal; any other close offers to
  // reattach the same one (a reload keeps ?session=).
  _showAction(ended) {
    const url = new URL(window.location.href);
    if (ended) url.searchParams.delete('session');
    this._action.href = url.href;
    this._action.textContent = ended ? 'new terminal' : 'reconnect';
    this._action.hidden = false;
    this._sessions.hidden = false;
  }
}

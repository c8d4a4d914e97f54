"""gunicorn's gevent worker: runs the session sweep, and tells live terminals
when it stops.

Without this, a deploy (HUP) or stop (TERM) leaves terminals frozen for
``graceful_timeout`` and then drops them without a close frame (PITFALLS #16).
With it, each gets close code 1012 at once and the page reattaches to the same
tmux session on a new worker.
"""
import gevent
from gunicorn.workers.ggevent import GeventWorker


class TerminalWorker(GeventWorker):
    def run(self):
        gateway = self._gateway()
        if gateway is not None:
            gateway.start_background()
        super().run()

    def _gateway(self):
        return getattr(self.wsgi, "extensions", {}).get("termweb")

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # Signal handlers must not block; the closing sends happen in a greenlet.
        gevent.spawn(self._close_terminals)

    def _close_terminals(self):
        gateway = self._gateway()
        if gateway is not None:
            gateway.close_all()

"""termweb's benchmark: ``python -m bench.run`` (or ``./bench.sh``, ``make bench``),
termweb beside Jupyter's terminado as a reference peer.

Modules, each small:

* ``server``    start/stop a real termweb (gunicorn + its own tmux socket), and
                a redis-server of its own for the scenarios that need one
* ``client``    a minimal terminal client over the wire protocol, plus
                escape stripping and prompt detection
* ``peer``      the reference peer: terminado's server and a client for its
                protocol with the same methods as ``client``'s
* ``scenarios`` the measurements; each takes a base URL (and optionally a
                client factory), so another server can be measured the same way
* ``load``      the load generator, run in a separate process
* ``direct``    termweb's reattach steps run directly against its tmux, for a
                breakdown of the reattach time
* ``procs``     /proc readings: process trees, PSS/RSS, CPU ticks
* ``report``    percentiles, JSON and the Markdown table with ratios
* ``chart``     the PNG chart of a run
* ``run``       the command line
"""

"""Where an exchange is in its life: one small int, ``Exchange.state``.

The states are ordered: a request only moves forward, except that a failed upstream attempt
that is retried goes back from SENDING/WAITING to CONNECTING.  Ordered on purpose, so that
"the response has started" is ``state >= RESPONDING`` (one comparison on the hot path).

    MATCHING ─► PHASES ─► CONNECTING ─► SENDING ─► WAITING ─► RESPONDING ─► DONE
        │          │          ▲            │          │  ▲                 ▲
        │          │          └── retry ───┴──────────┘  └─ (early answer: SENDING → RESPONDING)
        │          │                                         WAITING ─► TUNNEL ─► DONE (101)
        └──────────┴─► RESPONDING ─► DONE   (a local reply: 404, a plugin's reply, an error)

Any state but DONE goes to DONE when the client goes away (``downstream_lost``), and any
state before RESPONDING to RESPONDING then DONE on a local reply (``reply_local``).  After
RESPONDING has begun an error can only cut the response short (``down.abort()``).
docs/life-of-a-request.md has the table of transitions and what triggers each.
"""

from __future__ import annotations

from typing import Final

#: routing the request (and reading its body first when a route's ``vars`` look into it)
MATCHING: Final = 0
#: the request phases' hooks are running (an async hook may be pending: ``plugin_task``)
PHASES: Final = 1
#: a node is being picked and a connection taken from its pool or opened (``connecting``)
CONNECTING: Final = 2
#: the request head is written upstream; the request body is still streaming
SENDING: Final = 3
#: the whole request is written; waiting for the response head (read timeout armed)
WAITING: Final = 4
#: the response status is decided (upstream head relayed, or a local reply): body flowing
RESPONDING: Final = 5
#: the upstream answered 101: client and upstream bytes are spliced (``proxy/tunnel.py``)
TUNNEL: Final = 6
#: finished: logged, handed back to the downstream; nothing more happens
DONE: Final = 7

NAMES: Final = ("MATCHING", "PHASES", "CONNECTING", "SENDING", "WAITING", "RESPONDING",
                "TUNNEL", "DONE")

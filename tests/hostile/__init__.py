"""The hostile suite: what a misbehaving peer, a careless caller or an odd key does to a session.

Each module is one class of attack, tried in several variations, so that the
next defect of the same kind is caught too:

* ``test_storms``: peers that make the client reconnect forever (a session that
  dies right after it is ready, a message the server refuses and a restore
  replays, clean closes, a handshake that never completes);
* ``test_stuck``: waiting states that a silent peer could hold forever (every
  waiting state of every machine has a deadline and a declared way out) and
  commands that change state before they fail;
* ``test_wrong_data``: bytes, text and values that are not what they claim
  (odd PCM byte counts, wrong argument types, invalid configuration, lone
  surrogates, tool outcomes that are not one valid JSON output, events that
  do not fit the state, binary frames, deep JSON);
* ``test_leaks``: keys that reach logs, reprs, exceptions or recordings, and
  resources that outlive their consumer (abandoned event streams, a sync
  callback that blocks the loop).

The peers are real WebSocket servers on 127.0.0.1 (``tests.actors.peer.Peer``
with hooks, :class:`engine.server.LocalServer` with faults); every test runs
under asyncio and trio. The gateway, the carrier bridge and the browser
endpoint will face the same classes from new peers: their attacks go into the
same modules, one section per peer.
"""

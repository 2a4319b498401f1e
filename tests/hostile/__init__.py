"""The hostile suite: what a misbehaving peer, a careless caller or an odd key does to a session.

Each module is one class of attack, tried in several variations, so that the
next defect of the same kind is caught too:

* ``test_storms``: peers that would make the client reconnect forever (a
  session that dies right after it is ready, at ``session.created``, mid
  response or with 1009; clean closes; expiry; a reconnect socket that never
  becomes ready; a handshake that never completes);
* ``test_stuck``: waiting states a silent peer could hold forever (every
  waiting state of every machine has a deadline and a declared way out),
  commands that would change state before failing, and calls the server never
  made;
* ``test_wrong_data``: bytes, text and values that are not what they claim
  (odd PCM byte counts, wrong argument types, lone surrogates, tool outcomes
  that are not one valid JSON output, oversized items, deep JSON); the
  configuration's field validation is in ``tests/protocol/test_config.py``;
* ``test_frames``: frames of the wrong kind (binary frames, JSON in them);
* ``test_keys``: keys that could inject a header or reach logs, reprs,
  exceptions, events or recordings, including peers that echo them back;
* ``test_consumers``: consumers that leak or block (event streams abandoned
  with ``break``, a sync callback that blocks the loop).

The peers are real WebSocket servers on 127.0.0.1 (``tests.actors.peer.Peer``
with hooks, :class:`engine.server.LocalServer` with faults); every runtime test
runs under asyncio and trio. The gateway's peers (carriers, browsers) face the
same classes: the carrier's garbage frames, bad signatures and hang-ups are in
``tests/gateway``; new attacks of an existing class go into its module here,
one section per peer.
"""

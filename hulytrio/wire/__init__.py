"""The wire format: messages to bytes and back (msgpack), shared by every driver.

It imports only ``hulytrio.core``; the WebSocket transport frames these bytes,
and the simulator can round-trip every message through them
(``codec = true`` in a scenario) so a run exercises the real encoding.
"""

"""hulytrio core: pure state machines (no trio, no sockets, no clock)."""

"""Operator tools: the ``hulytrio`` commands that inspect a running hub."""

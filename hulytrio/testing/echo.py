"""Echo containers: ``echo`` returns the data it was given (benchmarks, the deployment images).

The scenarios run them in a real agent process::

    python -m hulytrio agent --factories hulytrio.testing.echo:FACTORIES \
        --url ws://127.0.0.1:PORT --endpoint 127.0.0.1:PORT2
"""

from __future__ import annotations

from typing import Any

import hulytrio

__all__ = ["FACTORIES", "Echo", "start_echo"]


class Echo(hulytrio.Container):
    """A container whose every operation returns the data it was given."""

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        """Return ``data`` unchanged."""
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    """Return a new ``Echo`` container (the factory of every benchmark kind)."""
    return Echo()


#: What ``hulytrio agent --factories hulytrio.testing.echo:FACTORIES`` hosts.
FACTORIES: dict[str, hulytrio.Factory] = {"echo": start_echo}

"""Request/response: host an echo container and call it through the hub.

Run the hub first (``make serve``), then ``python examples/01_request_response.py``
(another hub: pass its URL, e.g. ``ws://host:3737``, or set HULY_URL).
"""

from __future__ import annotations

import os
import sys

import trio

import hulytrio

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HULY_URL", "ws://127.0.0.1:3737")


class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        if operation == "divide":
            return data["a"] / data["b"]  # ZeroDivisionError reaches the caller
        return {"op": operation, "data": data, "from": client_id}


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    print(f"agent: starting echo {options.uuid}")
    return Echo()


async def main() -> None:
    with trio.fail_after(10):  # the hub must be up: `make serve`
        async with hulytrio.open_client(URL) as client:
            await client.wait_connection()
            await client.serve_agent({"echo": start_echo}, agent_id="example-agent")
            ref = await client.get("echo")
            print("got", ref)
            print("reply:", await ref.request("hello", {"n": 1}))
            print("divide:", await ref.request("divide", {"a": 6, "b": 3}))
            try:
                await ref.request("divide", {"a": 1, "b": 0})
            except hulytrio.RemoteError as exc:
                print(f"remote error: {exc.remote_type}: {exc.remote_message}")
            print("agents:", [a.agent_id for a in await client.agents()])
            await ref.release()


if __name__ == "__main__":
    trio.run(main)

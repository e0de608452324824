"""redis-py's asyncio connection, with sends that cannot swallow a cancellation.

redis-py bounds each send by `socket_timeout` with `asyncio.wait_for`. On Python 3.11,
`wait_for` returns normally when the task is cancelled just as the send finishes
(python/cpython#86296, fixed in 3.12 by building `wait_for` on `asyncio.timeout`). So a
cancellation that lands during a channel-layer send can be lost.

That happens often. Cancelling `group_send` at successive loop steps lost it in 53 of 120 tries
(`tests/test_redis_connection.py`). When it is lost:

- an answer that a deleted chat stopped streams on to its end;
- a socket's channel-layer receive, cancelled when the socket closes, keeps polling Redis
  forever;
- `asyncio.run`'s shutdown waits for such a receive for good: this hung REST calls, which run
  their answer in `async_to_sync`.

`CancelSafeConnection` sends under `asyncio.timeout` instead, as Python 3.12 does. The channel
layer uses it (settings `CHANNEL_LAYERS`). Reads already use `asyncio.timeout` in redis-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from redis import exceptions
from redis.asyncio.connection import Connection


class CancelSafeConnection(Connection):
    """A TCP connection to Redis (`redis://`) whose sends keep every cancellation."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        # redis-py's own method with `asyncio.timeout` for `wait_for`: connect when needed,
        # check health, write, and drop the connection on any failure mid-send (what is left
        # unsent cannot be resent).
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout or None):
                self._writer.writelines(command)
                await self._writer.drain()
        except TimeoutError:  # asyncio.timeout's (the builtin), not redis-py's
            await self.disconnect(nowait=True)
            raise exceptions.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise exceptions.ConnectionError(f"Error while writing to socket: {exc}.") from exc
        except BaseException:
            await self.disconnect(nowait=True)
            raise

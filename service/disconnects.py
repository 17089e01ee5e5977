"""Stop a request's work when its client goes away.

Once a request's body has been read, nothing else arrives on its connection until the answer is
sent, except a disconnect. ``CancelOnDisconnect`` listens for that and cancels the request's task:
its images leave the model's queue (``Batcher`` drops cancelled work), a super-resolution stops at
the next batch of tiles, and the count shows a 499 (the client closed the request), logged at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("visiongate")

#: set in the scope when the request was abandoned by its client (read by the metrics)
CLIENT_CLOSED_KEY = "visiongate.client_closed"


class CancelOnDisconnect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        body_read = asyncio.Event()
        disconnected: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        responded = False
        cancelled_here = False

        async def receive_body() -> Message:
            if body_read.is_set():  # asked again after the body: only a disconnect can come
                return await asyncio.shield(disconnected)
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            if message["type"] == "http.disconnect" and not disconnected.done():
                disconnected.set_result(message)
            return message

        async def send_answer(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        async def watch() -> None:
            nonlocal cancelled_here
            await body_read.wait()
            if disconnected.done():
                return
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected.set_result(message)
                if not responded:
                    cancelled_here = True
                    task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, receive_body, send_answer)
        except asyncio.CancelledError:
            if not cancelled_here:
                raise
            task.uncancel()
            scope[CLIENT_CLOSED_KEY] = True
            logger.info("%s %s -> 499: the client closed the connection before the answer; its work stopped",
                        scope.get("method"), scope.get("path"))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

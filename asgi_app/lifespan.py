"""ASGI lifespan support around Django's handler, which rejects the lifespan scope.

Startup creates the MongoDB indexes (a MongoDB that is down at startup must not stop the
process: it logs, `/readyz` reports 503, and the service recovers when MongoDB returns);
shutdown closes the MongoDB client.
"""

import gc
import logging
from typing import Any

from mongo.client import close_client, get_db
from mongo.indexes import ensure_indexes

logger = logging.getLogger(__name__)


async def startup() -> None:
    try:
        await ensure_indexes(get_db())
    except Exception as exc:
        # The first enrollment write creates them instead (mongo.indexes.ensure_indexes_once).
        logger.warning("startup: could not ensure MongoDB indexes (%s); continuing", exc)
    # Everything loaded so far (Django, DRF, the URL conf, the driver) lives as long as the
    # process: move it out of the collector's reach, so that a full collection scans only
    # request garbage instead of pausing every in-flight request for tens of milliseconds.
    gc.collect()
    gc.freeze()


async def shutdown() -> None:
    await close_client()


class LifespanApp:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

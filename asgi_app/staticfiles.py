"""Static files (the admin's CSS, Swagger UI and ReDoc) answered before Django.

ServeStatic's Django middleware would run inside Django's handler for every request; here
its file index is consulted at the ASGI level instead, and only for paths under
`STATIC_URL`. Every other request costs one string comparison and never leaves the event
loop, so the API keeps its thread-free path (asgi_app/handler.py).

Which files are served is ServeStatic's Django logic, unchanged: in DEBUG the installed
apps' static directories (no `collectstatic` needed), otherwise `STATIC_ROOT` as filled by
`manage.py collectstatic` (the image build runs it). The index is built once at startup
(`SERVESTATIC_AUTOREFRESH = False`), so a lookup is a dictionary access, not a file-system
search in a worker thread.
"""

from typing import Any

from django.conf import settings
from servestatic.asgi import FileServerASGI
from servestatic.middleware import ServeStaticMiddleware
from servestatic.utils import decode_path_info


async def _unused(request: Any) -> None:  # ServeStaticMiddleware wants a next handler
    return None


class StaticFilesApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.index = ServeStaticMiddleware(_unused, settings=settings)
        self.prefix = self.index.static_prefix

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            static_file = self.index.files.get(decode_path_info(scope["path"]))
            if static_file is not None:
                await FileServerASGI(static_file)(scope, receive, send)
                return
        await self.app(scope, receive, send)

"""Request id middleware: async-only, so it adds no thread hop to the request path."""

import re
import uuid

from django.utils.decorators import async_only_middleware

from asgi_app.logging import request_id_var

# A client's id is echoed only when it is short and printable, so it cannot forge log lines.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@async_only_middleware
def RequestIdMiddleware(get_response):
    async def middleware(request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = await get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response

    return middleware

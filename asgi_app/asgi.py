"""ASGI entry point: `asgi_app.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_app.settings")

django_application = get_asgi_application()

from asgi_app.lifespan import LifespanApp  # noqa: E402  (needs Django set up first)
from asgi_app.limits import BodySizeLimitMiddleware  # noqa: E402

application = LifespanApp(BodySizeLimitMiddleware(django_application))

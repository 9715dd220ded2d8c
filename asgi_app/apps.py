from django.apps import AppConfig


class AsgiAppConfig(AppConfig):
    name = "asgi_app"
    label = "asgi_app"

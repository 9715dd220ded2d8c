import asyncio

from django.core.management.base import BaseCommand

from mongo.client import close_client, get_db
from mongo.indexes import ensure_indexes


class Command(BaseCommand):
    help = "Create the MongoDB indexes the service relies on (idempotent)."

    def handle(self, *args, **options):
        async def run() -> list[str]:
            try:
                return await ensure_indexes(get_db())
            finally:
                await close_client()

        names = asyncio.run(run())
        self.stdout.write(self.style.SUCCESS(f"Indexes ensured: {', '.join(names)}"))

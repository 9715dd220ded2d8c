import asyncio

from django.core.management.base import BaseCommand, CommandError
from pymongo.errors import DuplicateKeyError

from common.errors import DomainError
from mongo.client import close_client, get_db, unavailable_on_driver_error
from mongo.indexes import DEDUPE_HINT, ensure_indexes, unique_conflicts


class Command(BaseCommand):
    help = "Create the MongoDB indexes the service relies on (idempotent)."

    def handle(self, *args, **options):
        async def run() -> tuple[list[str], list[str]]:
            db = get_db()
            try:
                with unavailable_on_driver_error():
                    return await ensure_indexes(db), []
            except DuplicateKeyError as exc:
                conflicts = [conflict.explain() for conflict in await unique_conflicts(db)]
                return [], conflicts or [f"the server reported {exc}"]
            finally:
                await close_client()

        try:
            names, conflicts = asyncio.run(run())
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        if conflicts:
            raise CommandError(
                "A unique index cannot be created because existing documents violate it: "
                f"{'; '.join(conflicts)}. Enrollment writes are refused (503) until it "
                f"exists: {DEDUPE_HINT}, then run ensure_indexes again."
            )
        self.stdout.write(self.style.SUCCESS(f"Indexes ensured: {', '.join(names)}"))

import asyncio
import secrets
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand

from accounts.models import User
from common.errors import DomainError
from courses import repository, services
from courses.management.errors import command_error
from mongo.client import close_client, get_db
from mongo.indexes import ensure_indexes

DEMO_USERS = ["ada", "grace", "linus", "margaret", "barbara"]
DEMO_PASSWORD = "demo-password-123"  # noqa: S105 (documented demo credentials)
DEMO_COURSES = [
    ("Security Awareness 101", "Phishing, passwords and reporting incidents.", "0.00", "USD"),
    ("Workplace Safety", "Mandatory safety training for all employees.", "0.00", "USD"),
    ("Data Protection and GDPR", "Handling personal data lawfully.", "49.99", "EUR"),
    ("Effective Code Review", "Giving and receiving useful review.", "129.00", "USD"),
    ("Leading Remote Teams", "Practices for distributed managers.", "199.50", "GBP"),
]


def _seed_users() -> str | None:
    """Create the demo admin and users if missing; returns the admin password if created."""
    admin_password = None
    if not User.objects.filter(username="admin").exists():
        admin_password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "admin@example.com", admin_password)
    for name in DEMO_USERS:
        if not User.objects.filter(username=name).exists():
            User.objects.create_user(name, f"{name}@example.com", DEMO_PASSWORD)
    return admin_password


class Command(BaseCommand):
    help = "Create a demo admin, a handful of users and courses (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when the catalogue has courses."
        )

    def handle(self, *args, if_empty=False, **options):
        async def run() -> tuple[bool, str | None]:
            try:
                await ensure_indexes(get_db())
                if if_empty and await repository.course_count() > 0:
                    return False, None
                admin_password = await sync_to_async(_seed_users)()
                existing = {
                    c.course_title for c in await repository.course_page(limit=100, offset=0)
                }
                for title, description, amount, currency in DEMO_COURSES:
                    if title not in existing:
                        await services.course_create(
                            course_title=title,
                            course_description=description,
                            amount=Decimal(amount),
                            currency=currency,
                        )
                return True, admin_password
            finally:
                await close_client()

        try:
            seeded, admin_password = asyncio.run(run())
        except DomainError as exc:
            raise command_error(exc) from exc
        if not seeded:
            self.stdout.write("Catalogue not empty; demo data not needed.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: users {', '.join(DEMO_USERS)} (password '{DEMO_PASSWORD}'), "
                f"{len(DEMO_COURSES)} courses."
            )
        )
        if admin_password:  # last, where it is seen
            self.stdout.write(
                self.style.WARNING(
                    f"Demo admin created: username 'admin', password '{admin_password}' "
                    '(shown once; reset it with `make manage ARGS="changepassword admin"`).'
                )
            )

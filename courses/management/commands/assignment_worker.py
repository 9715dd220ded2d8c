"""`python manage.py assignment_worker`: run assignment-job chunks from the queue.

Start as many as the load needs, on any hosts that reach Redis, MongoDB and SQL: each
chunk runs on exactly one of them at a time (courses/jobs.py, docs/scaling.md 4.7).
"""

from django.core.management.base import BaseCommand

from courses.job_worker import build_worker


class Command(BaseCommand):
    help = "Run assignment-job chunks from the job queue (JOB_QUEUE_URL, JOB_QUEUE_NAME)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once the queue is empty instead of waiting for more jobs.",
        )

    def handle(self, *args, **options):
        build_worker(burst=options["burst"]).run()

from datetime import UTC, datetime

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from accounts.permissions import IsAdmin
from asgi_app.pagination import page_body, page_params
from asgi_app.parsers import CSVParser, StrictJSONParser
from asgi_app.schema import ERRORS, LIST_PARAMS, ErrorSerializer, paginated
from asgi_app.views import ApiView, JsonAnswer, validated
from courses import assignment, selectors, services
from courses.idempotency import idempotent, idempotent_object_id
from courses.serializers import (
    CSV_COLUMNS,
    AssignmentListQuerySerializer,
    AssignmentReportSerializer,
    AssignMultipleSerializer,
    AssignSerializer,
    CourseCreateSerializer,
    CourseListQuerySerializer,
    CourseReportSerializer,
    CourseSerializer,
    CourseUpdateSerializer,
    EnrollmentQuerySerializer,
    EnrollmentSerializer,
    MyEnrollmentSerializer,
    RosterPageSerializer,
    RosterQuerySerializer,
    StoredAssignmentListSerializer,
    StoredAssignmentSerializer,
    assignment_input,
    assignment_report_data,
    course_changes,
    course_data,
    enrollment_csv_row,
    enrollment_data,
    stored_assignment_data,
)
from courses.services import (
    AlreadyCompleted,
    CourseArchived,
    EnrollmentClosed,
    NotActive,
)

ARCHIVED_FOR_ADMINS = "Only admins can list archived courses."
_CONFLICTS = {
    CourseArchived.code: "The course is archived (`course_archived`).",
    EnrollmentClosed.code: "Outside the course's enrollment window (`enrollment_closed`).",
    AlreadyCompleted.code: "The enrollment is completed (`already_completed`).",
    NotActive.code: "The enrollment is waitlisted or withdrawn (`not_active`).",
}


def _conflict(*codes: str) -> dict[int, OpenApiResponse]:
    return {
        409: OpenApiResponse(ErrorSerializer, description=" ".join(_CONFLICTS[c] for c in codes))
    }


async def _is_confirmed_admin(request, view) -> bool:
    """Whether the caller is an admin; the SQL check runs only for admin tokens."""
    admin = IsAdmin()
    return admin.has_permission(request, view) and await admin.confirm(request, view)


async def _enrollment_response(enrollment, created: bool = False) -> JsonAnswer:
    position = await selectors.enrollment_position(enrollment)
    return JsonAnswer(
        enrollment_data(enrollment, position=position),
        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )


def _query(serializer_class, request) -> dict:
    """Validated query parameters (a 400 with field errors otherwise)."""
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data


def _where(params: dict):
    return selectors.enrollment_filter(
        status=params.get("status"),
        overdue=params.get("overdue", False),
        search=params.get("search", ""),
    )


async def _rendered_enrollments(enrollments) -> list[dict]:
    positions = await selectors.waitlist_positions(enrollments)
    moment = datetime.now(UTC)
    return [enrollment_data(e, position=positions.get(e.id), moment=moment) for e in enrollments]


_WITHDRAW_RESPONSES = {
    200: OpenApiResponse(EnrollmentSerializer, description="Withdrawn (or already was)."),
    404: OpenApiResponse(ErrorSerializer, description="Unknown course, or never enrolled."),
    409: OpenApiResponse(ErrorSerializer, description=_CONFLICTS[AlreadyCompleted.code]),
}


_LIST_FILTERS = ("status", "search", "ordering")


def _list_query(request) -> dict:
    """The list's filters, validated; most requests send none, and building and running
    the serializer for its defaults cost 6% of a list request (bench/README.md)."""
    given = {k: v for k, v in request.query_params.items() if k in _LIST_FILTERS}
    if not given:
        return dict(_LIST_DEFAULTS)
    query = CourseListQuerySerializer(data=given)
    query.is_valid(raise_exception=True)
    return query.validated_data


def _list_defaults() -> dict:
    query = CourseListQuerySerializer(data={})
    query.is_valid(raise_exception=True)
    return dict(query.validated_data)


_LIST_DEFAULTS = _list_defaults()


async def course_page_answer(request, params: dict = _LIST_DEFAULTS) -> JsonAnswer:
    """One page of the course list for validated filters `params`; the view's answer and
    the fast path's (asgi_app/fastpath.py, default filters only)."""
    page = page_params(request)
    count, courses = await selectors.course_list(
        limit=page.limit,
        offset=page.offset,
        status=params["status"],
        search=params["search"],
        ordering=params["ordering"],
    )
    return JsonAnswer(page_body(request, page, count, [course_data(c) for c in courses]))


async def enroll_answer(request, course_id: str) -> JsonAnswer:
    """Enroll the authenticated caller; the view's answer and the fast path's."""
    # The token's claims identify the user: enrolling needs no SQL query.
    enrollment, created = await services.enrollment_create(
        course_id=course_id, user_id=request.user.id, username=request.user.username
    )
    return await _enrollment_response(enrollment, created)


class CourseListView(ApiView):
    def get_permissions(self):
        if self.request.method == "POST":
            return [IsAuthenticated(), IsAdmin()]
        return [IsAuthenticated()]

    @extend_schema(
        parameters=[*LIST_PARAMS, CourseListQuerySerializer],
        responses={200: paginated(CourseSerializer), **ERRORS(400, 401, 403, 503)},
        operation_id="courses_list",
        summary="List courses, newest first by default; archived ones only to admins who ask.",
    )
    async def get(self, request):
        params = _list_query(request)
        if params["status"] != "open" and not await _is_confirmed_admin(request, self):
            raise PermissionDenied(ARCHIVED_FOR_ADMINS)
        return await course_page_answer(request, params)

    @idempotent
    @extend_schema(
        request=CourseCreateSerializer,
        responses={201: CourseSerializer, **ERRORS(400, 401, 403, 413, 415, 503)},
        summary="Create a course (admin only).",
    )
    async def post(self, request):
        data = validated(CourseCreateSerializer, request)
        price = data["display_price"]
        course = await services.course_create(
            course_title=data["course_title"],
            course_description=data["course_description"],
            amount=price["amount"],
            currency=price["currency"],
            capacity=data["capacity"],
            enrollment_opens_at=data["enrollment_opens_at"],
            enrollment_closes_at=data["enrollment_closes_at"],
            status=data["status"],
            course_id=idempotent_object_id(request),
        )
        return Response(course_data(course), status=status.HTTP_201_CREATED)


class CourseDetailView(ApiView):
    def get_permissions(self):
        if self.request.method == "PATCH":
            return [IsAuthenticated(), IsAdmin()]
        return [IsAuthenticated()]

    @extend_schema(
        responses={200: CourseSerializer, **ERRORS(401, 404, 503)},
        operation_id="courses_retrieve",
        summary="One course, archived ones included; admins also get `enrolled_users`.",
    )
    async def get(self, request, course_id: str):
        # Only confirmed admins see enrolled_users.
        is_admin = await _is_confirmed_admin(request, self)
        course = await selectors.course_get(course_id=course_id, with_enrolled_users=is_admin)
        return Response(course_data(course, with_enrolled_users=is_admin))

    @extend_schema(
        request=CourseUpdateSerializer,
        responses={200: CourseSerializer, **ERRORS(400, 401, 403, 404, 413, 415, 503)},
        operation_id="courses_partial_update",
        summary="Change a course's fields, archive or reopen it (admin only).",
    )
    async def patch(self, request, course_id: str):
        data = validated(CourseUpdateSerializer, request)
        course = await services.course_update(course_id=course_id, changes=course_changes(data))
        return Response(course_data(course))


class EnrollView(ApiView):
    permission_classes = [IsAuthenticated]

    @idempotent
    @extend_schema(
        request=None,
        responses={
            201: OpenApiResponse(EnrollmentSerializer, description="Enrolled."),
            200: OpenApiResponse(EnrollmentSerializer, description="Already enrolled (same one)."),
            **ERRORS(401, 404, 413, 503),
            **_conflict(CourseArchived.code, EnrollmentClosed.code),
        },
        summary="Enroll the caller in a course (no body); 201 first time, 200 on repeats.",
    )
    async def post(self, request, course_id: str):
        return await enroll_answer(request, course_id)

    @extend_schema(
        request=None,
        responses={
            **_WITHDRAW_RESPONSES,
            **ERRORS(401, 503),
            403: OpenApiResponse(
                ErrorSerializer,
                description="Assigned by an admin (`assigned_enrollment`): only an admin "
                "can withdraw it.",
            ),
        },
        operation_id="courses_enroll_destroy",
        summary="Withdraw the caller from a course; 200 withdrawn, also on repeats.",
    )
    async def delete(self, request, course_id: str):
        enrollment = await services.enrollment_withdraw(
            course_id=course_id, user_id=request.user.id, by_admin=False
        )
        return await _enrollment_response(enrollment)


class MyEnrollmentsView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[*LIST_PARAMS, EnrollmentQuerySerializer],
        responses={200: paginated(MyEnrollmentSerializer), **ERRORS(400, 401, 503)},
        operation_id="enrollments_list",
        summary="The caller's own enrollments, newest first.",
    )
    async def get(self, request):
        page = page_params(request)
        params = _query(EnrollmentQuerySerializer, request)
        count, rows = await selectors.enrollment_list_for_user(
            user_id=request.user.id, limit=page.limit, offset=page.offset, where=_where(params)
        )
        rendered = await _rendered_enrollments([row.enrollment for row in rows])
        results = [
            {**data, "course_title": row.course_title}
            for data, row in zip(rendered, rows, strict=True)
        ]
        return Response(page_body(request, page, count, results))


class EnrollmentDetailView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: EnrollmentSerializer, **ERRORS(401, 503)}
        | {404: OpenApiResponse(ErrorSerializer, description="Unknown, or another user's.")},
        operation_id="enrollments_retrieve",
        summary="One enrollment: the caller's own (an admin: any).",
    )
    async def get(self, request, enrollment_id: str):
        enrollment = await selectors.enrollment_get(
            enrollment_id=enrollment_id,
            user_id=request.user.id,
            is_admin=await _is_confirmed_admin(request, self),
        )
        return await _enrollment_response(enrollment)


class CourseRosterView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    def perform_content_negotiation(self, request, force=False):
        # `?format=csv` is this view's own parameter, not DRF's renderer override.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        parameters=[RosterQuerySerializer],
        responses={
            (200, "application/json"): RosterPageSerializer,
            (200, "text/csv"): OpenApiResponse(
                str, description="`?format=csv`: " + ",".join(CSV_COLUMNS) + ", streamed."
            ),
            **ERRORS(400, 401, 403, 404, 503),
        },
        operation_id="courses_enrollments_list",
        summary="The course's roster, oldest first, by cursor; `?format=csv` streams it all.",
    )
    async def get(self, request, course_id: str):
        params = _query(RosterQuerySerializer, request)
        where = _where(params)
        if params["format"] == "csv":
            chunks = await selectors.roster_csv(
                course_id=course_id, where=where, columns=CSV_COLUMNS, row=enrollment_csv_row
            )
            response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="roster-{course_id}.csv"'
            return response
        page, cursor = await selectors.roster_page(
            course_id=course_id, where=where, cursor=params.get("cursor"), limit=params["limit"]
        )
        next_url = None
        if cursor is not None:
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", cursor)
        return Response({"next": next_url, "results": await _rendered_enrollments(page)})


class CourseEnrollmentView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        responses={200: EnrollmentSerializer, **ERRORS(401, 403, 503)}
        | {404: OpenApiResponse(ErrorSerializer, description="Unknown course or enrollment.")},
        operation_id="courses_enrollments_retrieve",
        summary="One user's enrollment in the course (admin only).",
    )
    async def get(self, request, course_id: str, user_id: int):
        enrollment = await selectors.course_enrollment(course_id=course_id, user_id=user_id)
        return await _enrollment_response(enrollment)

    @extend_schema(
        request=None,
        responses={**_WITHDRAW_RESPONSES, **ERRORS(401, 403, 503)},
        operation_id="courses_enrollments_destroy",
        summary="Withdraw any enrollment, admin-assigned ones included (admin only).",
    )
    async def delete(self, request, course_id: str, user_id: int):
        enrollment = await services.enrollment_withdraw(
            course_id=course_id, user_id=user_id, by_admin=True
        )
        return await _enrollment_response(enrollment)


class CompleteEnrollmentView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        request=None,
        responses={
            200: OpenApiResponse(EnrollmentSerializer, description="Completed (or already was)."),
            **ERRORS(401, 403, 503),
            404: OpenApiResponse(ErrorSerializer, description="Unknown course or enrollment."),
            **_conflict(NotActive.code),
        },
        summary="Mark an active enrollment completed (admin only).",
    )
    async def post(self, request, course_id: str, user_id: int):
        enrollment = await services.enrollment_complete(course_id=course_id, user_id=user_id)
        return await _enrollment_response(enrollment)


class CourseReportView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        responses={200: CourseReportSerializer, **ERRORS(401, 403, 404, 503)},
        summary="Enrollment counts by status, seats, overdue and completion rate (admin).",
    )
    async def get(self, request, course_id: str):
        report = await selectors.course_report(course_id=course_id)
        return Response(
            {
                "course_id": course_id,
                "counts": report.counts,
                "members": report.members,
                "capacity": report.course.capacity,
                "seats_left": report.course.seats_left,
                "overdue": report.overdue,
                "completion_rate": report.completion_rate,
            }
        )


class AssignView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @idempotent
    @extend_schema(
        request=AssignSerializer,
        responses={
            201: OpenApiResponse(EnrollmentSerializer, description="Assigned."),
            200: OpenApiResponse(
                EnrollmentSerializer,
                description="Already enrolled (with a due_at: its deadline moved to it).",
            ),
            **ERRORS(400, 401, 403, 404, 413, 415, 503),
            **_conflict(CourseArchived.code),
        },
        summary="Assign one user to a course, optionally with a deadline (admin only).",
    )
    async def post(self, request, course_id: str):
        data = validated(AssignSerializer, request)
        enrollment, created = await assignment.assignment_create(
            course_id=course_id,
            user_id=data["user_id"],
            admin_id=request.user.id,
            due_at=data["due_at"],
            override_capacity=data["override_capacity"],
        )
        return await _enrollment_response(enrollment, created)


_FLAG = {"type": "boolean"}
_CSV_BODY = {
    "type": "string",
    "description": "A header row naming one identifier column (`user_id`, `username` or "
    "`email`) and optionally `due_at` (per row; an empty cell means none); other columns "
    "are ignored. UTF-8, a BOM and CRLF line ends tolerated. A bad row makes the whole "
    "request a 400 naming the rows (the header is row 1).",
    "example": "email,due_at\r\nada@corp.example,2030-01-31T09:00:00Z\r\n",
}


class AssignMultipleView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]
    parser_classes = [StrictJSONParser, CSVParser]

    @idempotent
    @extend_schema(
        request={"application/json": AssignMultipleSerializer, "text/csv": _CSV_BODY},
        parameters=[
            OpenApiParameter(
                "dry_run", _FLAG, description="true: answer the report, write nothing."
            ),
            OpenApiParameter(
                "override_capacity", _FLAG, description="true: enroll beyond capacity."
            ),
        ],
        responses={
            200: AssignmentReportSerializer,
            **ERRORS(400, 401, 403, 404, 413, 415, 503),
            **_conflict(CourseArchived.code),
        },
        summary="Assign many users by id, username, email or CSV; a per-user report, "
        "stored unless it is a dry run (admin only).",
    )
    async def post(self, request, course_id: str):
        data = assignment_input(request)
        report = await assignment.assignment_bulk_create(
            course_id=course_id,
            items=data.items,
            admin_id=request.user.id,
            due_at=data.due_at,
            override_capacity=data.override_capacity,
            dry_run=data.dry_run,
            assignment_id=idempotent_object_id(request),
            with_identifiers=data.with_identifiers,
        )
        return Response(assignment_report_data(report))


class AssignmentListView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[*LIST_PARAMS, AssignmentListQuerySerializer],
        responses={200: paginated(StoredAssignmentListSerializer), **ERRORS(400, 401, 403, 503)},
        operation_id="assignments_list",
        summary="Stored assign-multiple reports, newest first (admin only).",
    )
    async def get(self, request):
        page = page_params(request)
        query = AssignmentListQuerySerializer(
            data={k: v for k, v in request.query_params.items() if k == "course_id"}
        )
        query.is_valid(raise_exception=True)
        count, stored = await assignment.assignment_list(
            course_id=query.validated_data.get("course_id"), limit=page.limit, offset=page.offset
        )
        return Response(
            page_body(request, page, count, [stored_assignment_data(a) for a in stored])
        )


class AssignmentDetailView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        responses={200: StoredAssignmentSerializer, **ERRORS(401, 403, 404, 503)},
        operation_id="assignments_retrieve",
        summary="One stored assign-multiple report with its results (admin only).",
    )
    async def get(self, request, assignment_id: str):
        stored = await assignment.assignment_get(assignment_id=assignment_id)
        return Response(stored_assignment_data(stored))

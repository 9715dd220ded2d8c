from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.permissions import IsAdmin
from asgi_app.pagination import page_body, page_params
from asgi_app.schema import ERRORS, LIST_PARAMS, ErrorSerializer, paginated
from asgi_app.views import ApiView, JsonAnswer, validated
from common.errors import CourseFull
from courses import assignment, selectors, services
from courses.idempotency import idempotent, idempotent_object_id
from courses.serializers import (
    AssignmentReportSerializer,
    AssignMultipleSerializer,
    AssignSerializer,
    CourseCreateSerializer,
    CourseListQuerySerializer,
    CourseSerializer,
    CourseUpdateSerializer,
    EnrollmentSerializer,
    MyEnrollmentSerializer,
    course_changes,
    course_data,
    enrollment_data,
)
from courses.services import CourseArchived, EnrollmentClosed

ARCHIVED_FOR_ADMINS = "Only admins can list archived courses."
_CONFLICTS = {
    CourseArchived.code: "The course is archived (`course_archived`).",
    EnrollmentClosed.code: "Outside the course's enrollment window (`enrollment_closed`).",
    CourseFull.code: "The course document reached MongoDB's size limit (`course_document_full`).",
}


def _conflict(*codes: str) -> dict[int, OpenApiResponse]:
    return {
        409: OpenApiResponse(ErrorSerializer, description=" ".join(_CONFLICTS[c] for c in codes))
    }


async def _is_confirmed_admin(request, view) -> bool:
    """Whether the caller is an admin; the SQL check runs only for admin tokens."""
    admin = IsAdmin()
    return admin.has_permission(request, view) and await admin.confirm(request, view)


def _enrollment_response(enrollment, created: bool) -> JsonAnswer:
    return JsonAnswer(
        enrollment_data(enrollment),
        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
    )


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
        page = page_params(request)
        params = _list_query(request)
        if params["status"] != "open" and not await _is_confirmed_admin(request, self):
            raise PermissionDenied(ARCHIVED_FOR_ADMINS)
        count, courses = await selectors.course_list(
            limit=page.limit,
            offset=page.offset,
            status=params["status"],
            search=params["search"],
            ordering=params["ordering"],
        )
        return JsonAnswer(page_body(request, page, count, [course_data(c) for c in courses]))

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
            **_conflict(CourseArchived.code, EnrollmentClosed.code, CourseFull.code),
        },
        summary="Enroll the caller in a course (no body); 201 first time, 200 on repeats.",
    )
    async def post(self, request, course_id: str):
        # The token's claims identify the user: enrolling needs no SQL query.
        enrollment, created = await services.enrollment_create(
            course_id=course_id, user_id=request.user.id, username=request.user.username
        )
        return _enrollment_response(enrollment, created)


class MyEnrollmentsView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=LIST_PARAMS,
        responses={200: paginated(MyEnrollmentSerializer), **ERRORS(401, 503)},
        operation_id="enrollments_list",
        summary="The caller's own enrollments, newest first.",
    )
    async def get(self, request):
        page = page_params(request)
        count, rows = await selectors.enrollment_list_for_user(
            user_id=request.user.id, limit=page.limit, offset=page.offset
        )
        results = [
            {**enrollment_data(row.enrollment), "course_title": row.course_title} for row in rows
        ]
        return Response(page_body(request, page, count, results))


class AssignView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @idempotent
    @extend_schema(
        request=AssignSerializer,
        responses={
            201: OpenApiResponse(EnrollmentSerializer, description="Assigned."),
            200: OpenApiResponse(EnrollmentSerializer, description="Already enrolled."),
            **ERRORS(400, 401, 403, 404, 413, 415, 503),
            **_conflict(CourseArchived.code, CourseFull.code),
        },
        summary="Assign one user to a course (admin only).",
    )
    async def post(self, request, course_id: str):
        data = validated(AssignSerializer, request)
        enrollment, created = await assignment.assignment_create(
            course_id=course_id, user_id=data["user_id"], admin_id=request.user.id
        )
        return _enrollment_response(enrollment, created)


class AssignMultipleView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @idempotent
    @extend_schema(
        request=AssignMultipleSerializer,
        responses={
            200: AssignmentReportSerializer,
            **ERRORS(400, 401, 403, 404, 413, 415, 503),
            **_conflict(CourseArchived.code, CourseFull.code),
        },
        summary="Assign many users to a course; returns a per-user report (admin only).",
    )
    async def post(self, request, course_id: str):
        data = validated(AssignMultipleSerializer, request)
        report = await assignment.assignment_bulk_create(
            course_id=course_id, user_ids=data["user_ids"], admin_id=request.user.id
        )
        return Response(
            {
                "course_id": report.course_id,
                "summary": report.summary,
                "results": [{"user_id": uid, "status": st} for uid, st in report.results],
                "enrollers": report.enrollers,
            }
        )

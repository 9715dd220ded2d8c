from django.urls import path, register_converter

from asgi_app.converters import ObjectIdConverter
from courses import job_views, views

register_converter(ObjectIdConverter, "objectid")

urlpatterns = [
    path("courses/", views.CourseListView.as_view(), name="course-list"),
    path("courses/<objectid:course_id>/", views.CourseDetailView.as_view(), name="course-detail"),
    path("courses/<objectid:course_id>/enroll/", views.EnrollView.as_view(), name="course-enroll"),
    path("courses/<objectid:course_id>/assign/", views.AssignView.as_view(), name="course-assign"),
    path(
        "courses/<objectid:course_id>/assign-multiple/",
        views.AssignMultipleView.as_view(),
        name="course-assign-multiple",
    ),
    path(
        "courses/<objectid:course_id>/enrollments/",
        views.CourseRosterView.as_view(),
        name="course-enrollments",
    ),
    path(
        "courses/<objectid:course_id>/enrollments/<int:user_id>/",
        views.CourseEnrollmentView.as_view(),
        name="course-enrollment",
    ),
    path(
        "courses/<objectid:course_id>/enrollments/<int:user_id>/complete/",
        views.CompleteEnrollmentView.as_view(),
        name="course-enrollment-complete",
    ),
    path(
        "courses/<objectid:course_id>/report/",
        views.CourseReportView.as_view(),
        name="course-report",
    ),
    path("enrollments/", views.MyEnrollmentsView.as_view(), name="enrollment-list"),
    path(
        "enrollments/<objectid:enrollment_id>/",
        views.EnrollmentDetailView.as_view(),
        name="enrollment-detail",
    ),
    path("assignments/", views.AssignmentListView.as_view(), name="assignment-list"),
    path(
        "assignments/<objectid:assignment_id>/",
        views.AssignmentDetailView.as_view(),
        name="assignment-detail",
    ),
    path(
        "courses/<objectid:course_id>/assignment-jobs/",
        job_views.AssignmentJobCreateView.as_view(),
        name="course-assignment-jobs",
    ),
    path(
        "assignment-jobs/<objectid:id>/",
        job_views.AssignmentJobDetailView.as_view(),
        name="assignment-job-detail",
    ),
    path(
        "assignment-jobs/<objectid:id>/results/",
        job_views.AssignmentJobResultsView.as_view(),
        name="assignment-job-results",
    ),
]

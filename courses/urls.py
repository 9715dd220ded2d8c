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
    path("enrollments/", views.MyEnrollmentsView.as_view(), name="enrollment-list"),
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

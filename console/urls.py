from django.contrib.auth import views as auth_views
from django.urls import path, register_converter
from django.urls.converters import get_converters

from accounts.forms import ThrottledAuthenticationForm
from asgi_app.converters import ObjectIdConverter
from console import job_views, views

if "objectid" not in get_converters():  # courses.urls registers it too
    register_converter(ObjectIdConverter, "objectid")

COURSE = "courses/<objectid:course_id>/"
MANAGE = "manage/courses/<objectid:course_id>/"
JOB = f"{MANAGE}jobs/<objectid:job_id>/"

urlpatterns = [
    path("", views.home, name="console-home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="console/login.html",
            authentication_form=ThrottledAuthenticationForm,
            redirect_authenticated_user=True,
            next_page="console-home",
        ),
        name="console-login",
    ),
    path(
        "logout/", auth_views.LogoutView.as_view(next_page="console-login"), name="console-logout"
    ),
    path("courses/", views.catalogue, name="console-catalogue"),
    path(COURSE, views.course, name="console-course"),
    path(f"{COURSE}enroll/", views.enroll, name="console-enroll"),
    path(f"{COURSE}withdraw/", views.withdraw, name="console-withdraw"),
    path("my-training/", views.my_training, name="console-my-training"),
    path("manage/courses/", views.manage_courses, name="console-manage-courses"),
    path("manage/courses/new/", views.course_create, name="console-course-create"),
    path(MANAGE, views.manage_course, name="console-manage-course"),
    path(f"{MANAGE}roster.csv", views.roster_csv, name="console-roster-csv"),
    path(f"{MANAGE}edit/", views.course_edit, name="console-course-edit"),
    path(f"{MANAGE}status/", views.course_status, name="console-course-status"),
    path(f"{MANAGE}assign/", views.assign, name="console-assign"),
    path(f"{MANAGE}assign/confirm/", views.assign_confirm, name="console-assign-confirm"),
    path(f"{MANAGE}assignments/", views.assignments, name="console-assignments"),
    path(
        f"{MANAGE}assign/reports/<objectid:report_id>/",
        views.assign_report,
        name="console-assign-report",
    ),
    path(
        f"{MANAGE}assign/reports/<objectid:report_id>/csv/",
        views.assign_report_csv,
        name="console-assign-report-csv",
    ),
    path(f"{MANAGE}jobs/", job_views.job_list, name="console-jobs"),
    path(f"{MANAGE}jobs/new/", job_views.job_new, name="console-job-new"),
    path(JOB, job_views.job_detail, name="console-job"),
    path(f"{JOB}progress/", job_views.job_progress, name="console-job-progress"),
    path(f"{JOB}cancel/", job_views.job_cancel, name="console-job-cancel"),
    path(f"{JOB}confirm/", job_views.job_confirm, name="console-job-confirm"),
    path(f"{JOB}results.csv", job_views.job_results_csv, name="console-job-results-csv"),
]

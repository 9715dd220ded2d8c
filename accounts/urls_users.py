from django.urls import path

from accounts import views

urlpatterns = [path("", views.UserListView.as_view(), name="user-list")]

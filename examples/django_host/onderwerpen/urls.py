from django.urls import path

from onderwerpen import views

urlpatterns = [
    path("klantcontacten", views.klantcontact_create, name="klantcontact-list"),
    path("onderwerpobjecten", views.onderwerpobject_create, name="onderwerpobject-list"),
    path("onderwerpobjecten/<uuid:uuid>", views.onderwerpobject_detail, name="onderwerpobject-detail"),
]

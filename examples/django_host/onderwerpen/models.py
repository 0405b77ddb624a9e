"""Open Klant's Klantcontact and Onderwerpobject, cut down to what the events need.

As in Open Klant, the onderwerpobjectidentificator is stored as four flat columns.
"""

from __future__ import annotations

import uuid

from django.db import models


class Klantcontact(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    onderwerp = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.onderwerp


class Onderwerpobject(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    klantcontact = models.ForeignKey(Klantcontact, models.CASCADE, null=True, related_name="onderwerpobjecten")
    onderwerpobjectidentificator_code_objecttype = models.CharField(max_length=50, blank=True)
    onderwerpobjectidentificator_code_soort_object_id = models.CharField(max_length=50, blank=True)
    onderwerpobjectidentificator_object_id = models.CharField(max_length=200, blank=True)
    onderwerpobjectidentificator_code_register = models.CharField(max_length=50, blank=True)

    def __str__(self) -> str:
        return str(self.uuid)

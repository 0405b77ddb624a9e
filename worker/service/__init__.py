"""`outbox serve`: the Notificaties API over HTTP (FastAPI on uvicorn).

Producers POST cloud events to /api/v1/cloudevents; client applications manage their abonnementen
(/api/v1/abonnement, and the same subscriptions through the CloudEvents Subscriptions API at
/api/v1/subscriptions); consumers read the event catalogue (/api/v1/event-types). Stateless: run as
many processes on as many machines as needed against the one PostgreSQL.
"""

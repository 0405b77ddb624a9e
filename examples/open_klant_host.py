"""An example host application: an Open Klant-like Onderwerpobject table, changed with SQLAlchemy.

Every change computes the Onderwerpobject's state before and after, asks
`outbox.zaken.zaak_link_events` which events that means, and enqueues them in
the same session, so they commit (or roll back) together with the change.

    python examples/open_klant_host.py --database-url postgresql+psycopg://...

needs ENABLE_CLOUD_EVENTS=true and NOTIFICATIONS_SOURCE set (or it passes
settings explicitly, as the tests do).
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from sqlalchemy import JSON, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import outbox
from outbox.zaken import CloudEventSettings, Onderwerpobject, zaak_link_events

BASE_URL = "http://open-klant.local:8000/klantinteracties/api/v1/onderwerpobjecten"


class Base(DeclarativeBase):
    pass


class OnderwerpobjectRow(Base):
    __tablename__ = "onderwerpobjecten"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    onderwerpobjectidentificator: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    def state(self) -> Onderwerpobject:
        ident = dict(self.onderwerpobjectidentificator) if self.onderwerpobjectidentificator else None
        return Onderwerpobject(url=f"{BASE_URL}/{self.uuid}", label=self.label, onderwerpobjectidentificator=ident)


def zaak_identificator(zaak_uuid: str) -> dict[str, str]:
    return {
        "codeObjecttype": "zaak",
        "codeSoortObjectId": "uuid",
        "objectId": zaak_uuid,
        "codeRegister": "openzaak",
    }


def create(
    session: Session,
    label: str,
    identificator: dict[str, Any] | None,
    settings: CloudEventSettings | None = None,
) -> OnderwerpobjectRow:
    row = OnderwerpobjectRow(uuid=str(uuid.uuid4()), label=label, onderwerpobjectidentificator=identificator)
    session.add(row)
    outbox.enqueue_many(session, zaak_link_events(None, row.state(), settings))
    return row


def change_identificator(
    session: Session,
    row: OnderwerpobjectRow,
    identificator: dict[str, Any] | None,
    settings: CloudEventSettings | None = None,
) -> None:
    before = row.state()
    row.onderwerpobjectidentificator = identificator
    outbox.enqueue_many(session, zaak_link_events(before, row.state(), settings))


def delete(session: Session, row: OnderwerpobjectRow, settings: CloudEventSettings | None = None) -> None:
    before = row.state()
    session.delete(row)
    outbox.enqueue_many(session, zaak_link_events(before, None, settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="SQLAlchemy URL, postgresql+psycopg://...")
    args = parser.parse_args()
    engine = create_engine(args.database_url)
    Base.metadata.create_all(engine)
    zaak_a, zaak_b = str(uuid.uuid4()), str(uuid.uuid4())
    with Session(engine) as session:
        row = create(session, "Mijn Klantcontact Onderwerp", zaak_identificator(zaak_a))
        session.commit()  # zaak-gekoppeld A
        change_identificator(session, row, zaak_identificator(zaak_b))
        session.commit()  # zaak-ontkoppeld A, zaak-gekoppeld B
        delete(session, row)
        session.rollback()  # nothing: the delete never happened
        delete(session, row)
        session.commit()  # zaak-ontkoppeld B
    engine.dispose()


if __name__ == "__main__":
    main()

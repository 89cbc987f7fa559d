"""Recording one event from its JSON body: the steps POST /v1/events and the stream consumer
(consumer/stream.py) share, so that both accept and refuse exactly the same events, the same way.

A body the event cannot be recorded from is refused with an `ApiError`, the error the API
answers with; the consumer turns it into a dead letter, as it does with the `ApiError` of a
malformed body (api/requests.py). `NotReady` (budget counters in Redis being rebuilt) is not
a refusal: the same body will be recorded later, so it is raised as it is. The API answers
it with 503 and Retry-After; the consumer leaves the message unacknowledged and pauses for
as long as it asks.
"""
from __future__ import annotations

from marshmallow import ValidationError

from promo_engine.api.errors import ApiError
from promo_engine.api.requests import canonical_body_hash
from promo_engine.api.schemas import EventRequestSchema, QuoteRequestSchema, flatten_messages
from promo_engine.core.event import Event
from promo_engine.ledger.conflicts import recorded_differences
from promo_engine.ledger.outcomes import IdempotencyConflict, LedgerError, Recorded


def request_schema(service, *, quote: bool = False) -> EventRequestSchema:
    """One schema per kind and service: building one costs more than validating a body,
    and loading keeps no state on the instance, so threads (and the API and the consumer
    of one process) share it."""
    schemas = service.request_schemas
    schema = schemas.get(quote)
    if schema is None:
        schema_class = QuoteRequestSchema if quote else EventRequestSchema
        schema = schemas[quote] = schema_class(event_types=service.registry.event_types,
                                               currency=service.settings.currency,
                                               point_value=service.settings.point_value,
                                               allowed_attributes=service.settings
                                               .allowed_attributes,
                                               now=lambda: service.clock())
    return schema


def validated_event(service, body: dict, *, quote: bool = False) -> Event:
    """The event of a request body; ApiError 422 `validation_error` naming each bad field."""
    try:
        return request_schema(service, quote=quote).load(body)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "the event is not valid",
                       fields=flatten_messages(exc.messages)) from None


def record_event_body(service, client_id: str, body: dict) -> tuple[Event, Recorded]:
    """Validate the body and record its event in the ledger, in one transaction.

    Returns the event (its type labels the callers' metrics) and what the ledger recorded,
    or replayed for an event_id the client used before with the same body. Raises ApiError
    when the event can never be recorded from this body (422 invalid or refused by the
    ledger, 409 the event_id used before with another body), and NotReady as it is.
    """
    event = validated_event(service, body)
    try:
        recorded = service.ledger.record(client_id=client_id, event=event,
                                         request_hash=canonical_body_hash(body),
                                         engine=service.engine())
    except IdempotencyConflict:
        raise conflict_error(service, client_id, event) from None
    except LedgerError as exc:
        raise ApiError(422, exc.code, exc.message, fields=exc.fields) from None
    return event, recorded


def _shown(value: str | None) -> str:
    return "absent" if value is None else value


def conflict_error(service, client_id: str, event: Event) -> ApiError:
    """409 `idempotency_conflict`, naming what differs from the event recorded under the
    event_id (looked up only now: a conflict is rare)."""
    differences = recorded_differences(client_id, event, currency=service.settings.currency)
    fields = {"event_id": ["already recorded with a different body"]}
    if differences:
        said = {name: f"was {_shown(was)}, this request has {_shown(now)}"
                for name, (was, now) in differences.items()}
        fields.update({name: [text] for name, text in said.items()})
        cause = "; ".join(f"{name} {text}" for name, text in said.items())
    elif differences is None:  # answered from the replay cache, the row since purged
        cause = "the body's canonical JSON differs"
    else:
        cause = ("its type, user, merchant, amount, currency and occurred_at match, so another "
                 "field differs (attributes, for example), or a value is written differently "
                 "(the same instant with Z or +00:00, 40.0 or 40.00: the canonical JSON "
                 "of the body is compared)")
    return ApiError(409, "idempotency_conflict",
                    f"event_id {event.event_id} was already recorded with a different body: "
                    f"{cause}. Resend the original body to get the recorded answer",
                    fields=fields)

"""/v1/openapi.json is what code generators and linters expect: a valid OpenAPI 3.1 document
(openapi-spec-validator), every operation named, tagged, described and exemplified, the
examples valid, the discriminators sound, the error codes complete. The npm linters
(Redocly, Spectral) run from bench/openapi_lint.py.

In-process and on SQLite only: the document does not depend on the database.
"""
from __future__ import annotations

import configparser
import json
import re
import sys
import types
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from conftest import make_settings, running_app
from wallet import new_wallet_client

ROOT = Path(__file__).resolve().parent.parent
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# The names generated clients use (docs/clients.md): fixed once published.
OPERATION_NAMES = {
    ("/v1/events", "post"): ("recordEvent", "events"),
    ("/v1/quote", "post"): ("quoteEvent", "events"),
    ("/v1/users/{user_id}/points", "get"): ("getUserPoints", "users"),
    ("/v1/users/{user_id}/vouchers", "get"): ("listUserVouchers", "users"),
    ("/v1/users/{user_id}/offers", "get"): ("listUserOffers", "users"),
    ("/v1/campaigns", "get"): ("listCampaigns", "campaigns"),
    ("/v1/openapi.json", "get"): ("getOpenApiDocument", "meta"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("lint") / "promo.db"
    with running_app(make_settings(f"sqlite:///{path}")) as app:
        response = app.test_client().get("/v1/openapi.json")
        assert response.status_code == 200
        yield app, response.get_json()


@pytest.fixture(scope="module")
def document(served):
    return served[1]


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def validator(document, schema: dict) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator for `schema`, its references resolved in the
    document's components, formats asserted."""
    return Draft202012Validator({**schema, "components": document["components"]},
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_the_document_is_valid_openapi_3_1(document):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_info_servers_and_license(document):
    license_id = configparser.ConfigParser()
    license_id.read(ROOT / "setup.cfg")
    assert document["info"]["license"] == {
        "name": "Apache 2.0", "identifier": license_id["metadata"]["license"]}
    assert document["info"]["contact"]["name"]
    assert document["servers"] == [{"url": "http://127.0.0.1:8000",
                                    "description": document["servers"][0]["description"]}]
    assert "replace it" in document["servers"][0]["description"]


def test_every_operation_is_named_tagged_and_described(document):
    found = {(path, method): (operation["operationId"], *operation["tags"])
             for path, method, operation in operations(document)}
    assert found == OPERATION_NAMES
    declared = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert sorted(declared) == ["campaigns", "events", "meta", "users"]
    assert all(declared.values())
    for path, method, operation in operations(document):
        assert operation["summary"].strip() and operation["description"].strip(), (path, method)


def test_every_operation_has_request_and_response_examples(document):
    for path, method, operation in operations(document):
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert body["examples"], (path, method)
        elif operation.get("parameters"):  # a GET: its parameters are the request
            assert any("example" in p for p in operation["parameters"]), (path, method)
        else:
            assert path == "/v1/openapi.json"  # nothing to send but the path
        for status, response in operation["responses"].items():
            content = response["content"]["application/json"]
            assert content.get("examples") or content.get("example"), (path, method, status)


def media_examples(document):
    """(where, schema, value) for every example of a request body or a response."""
    for path, method, operation in operations(document):
        media = [("request", operation.get("requestBody", {}).get("content", {}))]
        media += [(status, response.get("content", {}))
                  for status, response in operation["responses"].items()]
        for where, content in media:
            for media_type in content.values():
                values = [("example", media_type["example"])] if "example" in media_type else []
                values += [(name, example["value"])
                           for name, example in media_type.get("examples", {}).items()]
                for name, value in values:
                    yield f"{method} {path} {where} {name}", media_type["schema"], value
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                yield (f"{method} {path} {parameter['name']}", parameter["schema"],
                       parameter["example"])


def test_examples_validate_against_their_schemas(document):
    wrong, count = [], 0
    for where, schema, value in media_examples(document):
        count += 1
        wrong += [(where, error.message) for error in validator(document, schema)
                  .iter_errors(value)]
    assert wrong == []
    assert count >= 40  # every operation's, and an error body per documented status


def test_request_examples_are_accepted_by_the_server(served):
    """The examples are sent as they are: none is refused as invalid (the ledger may still
    refuse one on its merits, e.g. a refund of a payment this database never saw)."""
    app, document = served
    wallet = new_wallet_client(app)
    answers = {}
    for path in ("/v1/events", "/v1/quote"):
        examples = document["paths"][path]["post"]["requestBody"]["content"][
            "application/json"]["examples"]
        # in the order of the story they tell (the document's keys are sorted)
        story = ["activation", "payment", "refund", "redemption", "cancel"]
        assert set(examples) <= set(story)
        for name in sorted(examples, key=story.index):
            response = wallet.post(path, examples[name]["value"])
            answers[path, name] = (response.status_code,
                                   (response.get_json().get("error") or {}).get("code"))
    assert answers == {
        ("/v1/events", "payment"): (201, None),
        ("/v1/events", "refund"): (201, None),
        ("/v1/events", "activation"): (201, None),
        ("/v1/events", "redemption"): (201, None),
        ("/v1/events", "cancel"): (201, None),
        ("/v1/quote", "payment"): (200, None),
        ("/v1/quote", "redemption"): (200, None),
    }


def leaves(schemas: dict, name: str) -> list[str]:
    """The object schemas a schema stands for: itself, or the leaves of its oneOf."""
    schema = schemas[name]
    if "oneOf" not in schema:
        return [name]
    return [leaf for one in schema["oneOf"]
            for leaf in leaves(schemas, one["$ref"].split("/")[-1])]


def test_discriminators_map_to_existing_schemas(document):
    schemas = document["components"]["schemas"]
    discriminated = {name: schema["discriminator"] for name, schema in schemas.items()
                     if "discriminator" in schema}
    assert sorted(discriminated) == ["EventRequest", "QuoteRequest", "Reward"]
    for name, discriminator in discriminated.items():
        key, mapping = discriminator["propertyName"], discriminator["mapping"]
        assert sorted(one["$ref"] for one in schemas[name]["oneOf"]) == sorted(
            mapping.values())
        for value, ref in mapping.items():
            assert ref.startswith("#/components/schemas/")
            target = ref.split("/")[-1]
            assert target in schemas, ref
            for leaf in leaves(schemas, target):
                assert schemas[leaf]["properties"][key]["enum"] == [value], leaf
                assert key in schemas[leaf]["required"], leaf


def test_the_reward_schemas_are_the_engines_reward_kinds(document):
    from promo_engine.core import rewards
    mapping = document["components"]["schemas"]["Reward"]["discriminator"]["mapping"]
    assert set(mapping) == {rewards.POINTS} | rewards.MONEY_KINDS


def test_a_payment_without_amount_matches_no_schema(document):
    """What a typed client refuses at compile time, the description refuses too."""
    payment = dict(document["paths"]["/v1/events"]["post"]["requestBody"]["content"][
        "application/json"]["examples"]["payment"]["value"])
    event = validator(document, {"$ref": "#/components/schemas/EventRequest"})
    assert event.is_valid(payment)
    del payment["amount"]
    assert not event.is_valid(payment)
    assert not validator(document, {"$ref": "#/components/schemas/PaymentEvent"}).is_valid(
        payment)


# What raises an error code in the source: the API's own errors, the ledger's refusals
# (answered 422 with their code), and error bodies written directly.
RAISED = [re.compile(r'ApiError\(\s*\d+,\s*"([a-z_]+)"'),
          re.compile(r'LedgerError\(\s*"([a-z_]+)"'),
          re.compile(r'error_response\(\s*\d+,\s*"([a-z_]+)"')]
# werkzeug's own errors on the way to a view: a malformed body, no such URL, a method the
# URL does not take, a body over the limit (api/errors.py names them)
ROUTING_STATUSES = (400, 404, 405, 413)


def codes_in_the_source() -> set[str]:
    from promo_engine.api.errors import HTTP_CODES
    codes = {HTTP_CODES[status] for status in ROUTING_STATUSES}
    for path in (ROOT / "promo_engine").rglob("*.py"):
        text = path.read_text()
        for pattern in RAISED:
            codes.update(pattern.findall(text))
    return codes


def test_error_code_enum_is_every_code_the_source_raises(document):
    code = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert set(code["enum"]) == codes_in_the_source()
    assert code["enum"] == sorted(code["enum"])
    for value in code["enum"]:
        assert f"`{value}`" in code["description"]


def test_a_method_the_path_does_not_take_gets_the_documented_405(served):
    app, document = served
    wallet = new_wallet_client(app)
    for path, method, operation in operations(document):
        assert operation["responses"]["405"]["headers"]["Allow"]["required"] is True
    response = wallet.post("/v1/campaigns", {})
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert sorted(response.headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
    assert response.get_json() == document["paths"]["/v1/campaigns"]["get"]["responses"][
        "405"]["content"]["application/json"]["example"]


def test_the_document_is_public(served):
    """security: [] on GET /v1/openapi.json, and no signature needed indeed; any other
    method on it is signed like the rest of /v1/."""
    app, document = served
    assert document["paths"]["/v1/openapi.json"]["get"]["security"] == []
    for path, method, operation in operations(document):
        if path != "/v1/openapi.json":
            assert operation["security"] == [
                {"PromoKey": [], "PromoTimestamp": [], "PromoSignature": []}]
    client = app.test_client()
    assert client.get("/v1/openapi.json").status_code == 200
    assert client.post("/v1/openapi.json").status_code == 401


def test_the_signing_sample_in_the_description_signs_a_request_the_server_accepts(served):
    """The Python sample of the signature scheme, run as written (requests.post answered
    by the app in-process)."""
    app, document = served
    schemes = document["components"]["securitySchemes"]
    description = schemes["PromoSignature"]["description"]
    for words in ("{timestamp}.{METHOD}.{path}.{body}", "HMAC-SHA256", "lowercase hex",
                  "v1=", "comma-separated", "docs/clients.md"):
        assert words in description, words
    assert "300 s" in schemes["PromoTimestamp"]["description"]
    sample = re.search(r"```python\n(.*?)```", description, re.S).group(1)
    wallet = new_wallet_client(app)
    client = app.test_client()
    fake = types.ModuleType("requests")
    fake.post = lambda url, data, headers: client.post(
        url.removeprefix("http://127.0.0.1:8000"), data=data, headers=headers)
    namespace: dict = {}
    saved = sys.modules.get("requests")
    sys.modules["requests"] = fake
    try:
        exec(sample, namespace)  # noqa: S102 - the project's own documentation
        payment = {"event_id": "sample-1", "type": "payment", "user_id": "u_9",
                   "occurred_at": "2026-11-21T12:30:00+08:00", "merchant_id": "m_100",
                   "amount": "10.00", "currency": "CNY"}
        response = namespace["signed_post"]("http://127.0.0.1:8000", wallet.key_id,
                                            wallet.secret, "/v1/events", payment)
    finally:
        if saved is None:
            del sys.modules["requests"]
        else:
            sys.modules["requests"] = saved
    assert response.status_code == 201, response.get_data(as_text=True)
    assert json.loads(response.get_data())["event_id"] == "sample-1"

"""request-validation through a real gateway: APISIX schemas, statuses and error texts."""

from __future__ import annotations

import http.client
import json

import pytest

from pylon.pdk.testing import Kit

PAYLOAD_SCHEMA = {
    "type": "object",
    "required": ["required_payload"],
    "properties": {
        "required_payload": {"type": "string"},
        "boolean_payload": {"type": "boolean"},
        "timeouts": {"type": "integer", "minimum": 1, "maximum": 254, "default": 3},
        "req_headers": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "email": {"type": "string", "format": "email"},
        "when": {"type": "string", "format": "date-time"},
    },
}
DOC = {
    "routes": [
        {"id": "body", "uri": "/body",
         "plugins": {"request-validation": {"body_schema": PAYLOAD_SCHEMA}}},
        {"id": "header", "uri": "/header",
         "plugins": {"request-validation": {"header_schema": PAYLOAD_SCHEMA}}},
        {"id": "custom", "uri": "/custom", "plugins": {"request-validation": {
            "body_schema": {"type": "object", "required": ["test"],
                            "properties": {"test": {"type": "string",
                                                    "enum": ["a", "b", "c"]}}},
            "rejected_msg": "customize reject message for body_schema.required",
            "rejected_code": 505}}},
        {"id": "both", "uri": "/both", "plugins": {"request-validation": {
            "header_schema": {"type": "object", "required": ["x-tenant"],
                              "properties": {"x-tenant": {"type": "string",
                                                          "pattern": "^[a-z]+$"}}},
            "body_schema": {"type": "object", "additionalProperties": False,
                            "properties": {"n": {"type": "number"}}}}}},
        {"id": "array", "uri": "/array", "plugins": {"request-validation": {
            "body_schema": {"type": "array", "uniqueItems": True, "maxItems": 3}}}},
        {"id": "small", "uri": "/small", "plugins": {"request-validation": {
            "body_schema": PAYLOAD_SCHEMA, "max_req_body_size": 64}}},
    ],
}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC) as k:
        yield k


def _post(kit, path, body, ctype="application/json", headers=None):
    h = {"Content-Type": ctype, **(headers or {})}
    return kit.request("POST", path, body=body if isinstance(body, (str, bytes))
                       else json.dumps(body), headers=h)


def test_missing_required_property_is_400_with_apisix_text(kit):
    before = len(kit.upstream.requests)
    r = _post(kit, "/body", {"boolean-payload": True})
    assert r.status == 400
    assert r.text == 'property "required_payload" is required'
    assert len(kit.upstream.requests) == before             # nothing proxied


def test_valid_body_reaches_upstream_as_validated(kit):
    r = _post(kit, "/body", '{"required_payload": "hello", "boolean_payload": true}')
    assert r.status == 200
    sent = r.json()
    assert json.loads(sent["body"]) == {"required_payload": "hello", "boolean_payload": True,
                                        "timeouts": 3}       # the schema default, as APISIX
    assert sent["headers"]["content-length"] == str(len(sent["body"]))


def test_duplicate_json_keys_reach_upstream_as_the_value_checked(kit):
    r = _post(kit, "/body", '{"required_payload": 1, "required_payload": "x"}')
    assert r.status == 200
    assert json.loads(r.json()["body"]) == {"required_payload": "x", "timeouts": 3}
    assert r.json()["body"].count("required_payload") == 1


def test_wrong_type_error_names_the_property(kit):
    r = _post(kit, "/body", {"required_payload": "x", "boolean_payload": "yes"})
    assert r.status == 400
    assert r.text == ('property "boolean_payload" validation failed: '
                      "wrong type: expected boolean, got string")


def test_nested_array_item_error(kit):
    r = _post(kit, "/body", {"required_payload": "x", "req_headers": ["a", 2]})
    assert r.text == ('property "req_headers" validation failed: '
                      "failed to validate item 2: wrong type: expected string, got number")
    r = _post(kit, "/body", {"required_payload": "x", "req_headers": []})
    assert r.text == ('property "req_headers" validation failed: '
                      "expect array to have at least 1 items")


def test_range_and_format_errors(kit):
    r = _post(kit, "/body", {"required_payload": "x", "timeouts": 0})
    assert r.text == 'property "timeouts" validation failed: expected 0 to be at least 1'
    r = _post(kit, "/body", {"required_payload": "x", "timeouts": 300})
    assert r.text == 'property "timeouts" validation failed: expected 300 to be at most 254'
    r = _post(kit, "/body", {"required_payload": "x", "email": "nope"})
    assert r.text == 'property "email" validation failed: expect valid email address but got: nope'
    # APISIX's validator does not check date-time: neither do we
    assert _post(kit, "/body", {"required_payload": "x", "when": "whenever"}).status == 200


def test_invalid_json_is_400(kit):
    r = _post(kit, "/body", "{not json")
    assert r.status == 400
    assert "character" in r.text


def test_empty_body_is_rejected_with_an_empty_answer(kit):
    r = kit.request("POST", "/body", body=b"", headers={"Content-Type": "application/json"})
    assert r.status == 400
    assert r.body == b""
    r = kit.get("/custom")
    assert r.status == 505
    assert r.text == "customize reject message for body_schema.required"


def test_custom_code_and_message(kit):
    r = _post(kit, "/custom", {"test": "abc"})
    assert r.status == 505
    assert r.text == "customize reject message for body_schema.required"
    assert _post(kit, "/custom", {"test": "a"}).status == 200


def test_header_schema_checks_lower_case_header_names(kit):
    r = kit.get("/header")
    assert r.status == 400
    assert r.text == 'property "required_payload" is required'
    r = kit.get("/header", headers={"Required_Payload": "test payload"})
    assert r.status == 200


def test_repeated_header_is_an_array(kit):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:
        c.putrequest("GET", "/header")
        c.putheader("required_payload", "a")
        c.putheader("required_payload", "b")
        c.endheaders()
        r = c.getresponse()
        body = r.read().decode()
    finally:
        c.close()
    assert r.status == 400
    assert body == ('property "required_payload" validation failed: '
                    "wrong type: expected string, got table")


def test_header_and_body_schemas_together(kit):
    r = _post(kit, "/both", {"n": 1}, headers={"X-Tenant": "ACME"})
    assert r.status == 400
    assert r.text == ('property "x-tenant" validation failed: '
                      'failed to match pattern "^[a-z]+$" with "ACME"')
    r = _post(kit, "/both", {"n": 1, "m": 2}, headers={"X-Tenant": "acme"})
    assert r.text == "additional properties forbidden, found m"
    r = _post(kit, "/both", {"n": 1.5}, headers={"X-Tenant": "acme"})
    assert r.status == 200


def test_array_body(kit):
    r = _post(kit, "/array", [1, 2, 1])
    assert r.text == "expected unique items but items 1 and 3 are equal"
    r = _post(kit, "/array", {"a": 1})
    assert r.text == "wrong type: expected array, got table"
    assert _post(kit, "/array", [1, 2]).status == 200


def test_urlencoded_form_is_validated_and_sent_unchanged(kit):
    form = "a=b&" * 101 + "required_payload=101-hello"
    r = _post(kit, "/body", form, ctype="application/x-www-form-urlencoded")
    assert r.status == 200
    assert r.json()["body"] == form
    r = _post(kit, "/body", form, ctype="Application/X-WWW-Form-Urlencoded; charset=utf-8")
    assert r.status == 200
    r = _post(kit, "/body", "a=b&boolean_payload", ctype="application/x-www-form-urlencoded")
    assert r.text == 'property "required_payload" is required'
    r = _post(kit, "/body", "required_payload=x&boolean_payload",
              ctype="application/x-www-form-urlencoded")
    assert r.status == 200                                 # a bare key is true


def test_duplicated_content_type_is_rejected(kit):
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    body = b'{"required_payload": "hello"}'
    try:
        c.putrequest("POST", "/body")
        c.putheader("Content-Type", "application/x-www-form-urlencoded")
        c.putheader("Content-Type", "application/json")
        c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        text = r.read().decode()
    finally:
        c.close()
    assert r.status == 400
    assert text == "duplicated Content-Type header"


def test_body_over_max_req_body_size_is_413(kit):
    ok = {"required_payload": "x" * 20}
    assert len(json.dumps(ok)) <= 64
    assert _post(kit, "/small", ok).status == 200
    seen = len(kit.upstream.requests)
    r = _post(kit, "/small", {"required_payload": "x" * 100})
    assert r.status == 413
    assert len(kit.upstream.requests) == seen               # never sent upstream
    c = http.client.HTTPConnection("127.0.0.1", kit.port, timeout=10)
    try:                                    # chunked: no Content-Length to look at first
        c.putrequest("POST", "/small")
        c.putheader("Content-Type", "application/json")
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for part in (b'{"required_payload": "', b"y" * 80, b'"}'):
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
        assert c.getresponse().status == 413
    finally:
        c.close()
    assert len(kit.upstream.requests) == seen


def test_default_max_req_body_size_is_64_mib_and_must_be_positive():
    from importlib import import_module

    from pylon.proxy.registry import PluginSpec
    spec = PluginSpec.from_module(import_module("pylon.plugins.request_validation"), "builtin")
    conf = spec.check_conf({"body_schema": {"type": "object"}})
    assert conf["max_req_body_size"] == 67108864
    with pytest.raises(Exception, match="max_req_body_size"):
        spec.check_conf({"body_schema": {"type": "object"}, "max_req_body_size": 0})


def test_config_needs_a_schema_and_valid_schemas(kit):
    doc = json.loads(json.dumps(DOC))
    doc["routes"] += [
        {"id": "none", "uri": "/none", "plugins": {"request-validation": {
            "rejected_msg": "customize reject message"}}},
        {"id": "badtype", "uri": "/badtype", "plugins": {"request-validation": {
            "body_schema": {"type": "test"}}}},
        {"id": "badcode", "uri": "/badcode", "plugins": {"request-validation": {
            "header_schema": {"type": "object"}, "rejected_code": 10000}}},
    ]
    kit.apply(doc)
    try:
        for path in ("/none", "/badtype", "/badcode"):
            assert kit.get(path).status == 404, path
        log = kit.log()
        assert "failed to check the configuration of plugin request-validation" in log
        assert "invalid body_schema" in log
        assert kit.get("/custom").status == 505
    finally:
        kit.apply(DOC)

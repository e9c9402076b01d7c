"""body-transformer through a real gateway: APISIX's doc page and test-file examples."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from pylon.pdk import testing
from pylon.pdk.testing import Kit

# The doc page's SOAP templates, as its awk/tr pipeline turns them into one line.
REQ_TEMPLATE = (
    '<?xml version="1.0"?><soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap'
    '/envelope/"><soap-env:Body><ns0:getCountryRequest xmlns:ns0="http://spring.io/guides/gs'
    '-producing-web-service"><ns0:name>{{_escape_xml(name)}}</ns0:name></ns0:getCountryReques'
    't></soap-env:Body></soap-env:Envelope>')
RSP_TEMPLATE = (
    '{% if Envelope.Body.Fault == nil then %}{"status":"{{_ctx.var.status}}","currency":"{{Env'
    'elope.Body.getCountryResponse.country.currency}}","population":{{Envelope.Body.getCountryR'
    'esponse.country.population}},"capital":"{{Envelope.Body.getCountryResponse.country.capita'
    'l}}","name":"{{Envelope.Body.getCountryResponse.country.name}}"}{% else %}{"message":{*_es'
    'cape_json(Envelope.Body.Fault.faultstring[1])*},"code":"{{Envelope.Body.Fault.faultcode}}"'
    '{% if Envelope.Body.Fault.faultactor ~= nil then %}, "actor":"{{Envelope.Body.Fault.faulta'
    'ctor}}"{% end %}}{% end %}')

# t/plugin/body-transformer.t TEST 1: multi-line templates, base64-encoded
T_REQ = """
<?xml version="1.0"?>
<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">
 <soap-env:Body>
  <ns0:getCountryRequest xmlns:ns0="http://spring.io/guides/gs-producing-web-service">
   <ns0:name>{{_escape_xml(name)}}</ns0:name>
  </ns0:getCountryRequest>
 </soap-env:Body>
</soap-env:Envelope>
"""
T_RSP = """
{% if Envelope.Body.Fault == nil then %}
{
   "status":"{{_ctx.var.status}}",
   "currency":"{{Envelope.Body.getCountryResponse.country.currency}}",
   "population":{{Envelope.Body.getCountryResponse.country.population}},
   "capital":"{{Envelope.Body.getCountryResponse.country.capital}}",
   "name":"{{Envelope.Body.getCountryResponse.country.name}}"
}
{% else %}
{
   "message":{*_escape_json(Envelope.Body.Fault.faultstring[1])*},
   "code":"{{Envelope.Body.Fault.faultcode}}"
   {% if Envelope.Body.Fault.faultactor ~= nil then %}
   , "actor":"{{Envelope.Body.Fault.faultactor}}"
   {% end %}
}
{% end %}
"""

SOAP_OK = """<SOAP-ENV:Envelope
    xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
    <SOAP-ENV:Header/>
    <SOAP-ENV:Body>
        <ns2:getCountryResponse
            xmlns:ns2="http://spring.io/guides/gs-producing-web-service">
            <ns2:country>
                <ns2:name>%s</ns2:name>
                <ns2:population>46704314</ns2:population>
                <ns2:capital>Madrid</ns2:capital>
                <ns2:currency>EUR</ns2:currency>
            </ns2:country>
        </ns2:getCountryResponse>
    </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""
SOAP_FAULT = """<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
  <SOAP-ENV:Header/>
  <SOAP-ENV:Body>
    <SOAP-ENV:Fault>
      <faultcode>SOAP-ENV:Server</faultcode>
      <faultstring xml:lang="en">Your country "%s" is not supported</faultstring>
    </SOAP-ENV:Fault>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


def _soap(h: Any, rec: dict[str, Any]) -> None:
    """A SOAP service on /ws*: getCountry for Spain, a Fault for any other name."""
    if not rec["path"].startswith("/ws"):
        testing._echo(h, rec)
        return
    m = re.search(r"<ns0:name>(.*?)</ns0:name>", rec["body"])
    country = m.group(1) if m else ""
    out = (SOAP_OK % country if country == "Spain" else SOAP_FAULT % country).encode()
    h.send_response(200 if country == "Spain" else 500)
    h.send_header("Content-Type", "text/xml;charset=utf-8")
    h.send_header("Content-Length", str(len(out)))
    h.end_headers()
    h.wfile.write(out)


def _bt(rid: str, conf: dict[str, Any], uri: str | None = None) -> dict[str, Any]:
    return {"id": rid, "uri": uri or f"/{rid}", "plugins": {"body-transformer": conf}}


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


DOC = {"routes": [
    _bt("ws", {"request": {"template": REQ_TEMPLATE, "input_format": "json"},
               "response": {"template": RSP_TEMPLATE, "input_format": "xml"}}, "/ws"),
    _bt("ws-b64", {"request": {"template": _b64(T_REQ)},
                   "response": {"input_format": "xml", "template": _b64(T_RSP)}}, "/ws-b64"),
    _bt("modify", {"request": {
        "template": '{"foo":"{{name .. " world"}}","bar":{{age+10}}}'}}),
    _bt("vars", {"request": {"template": '{"foo":"{{_ctx.var.arg_name .. " world"}}"}'}}),
    _bt("encoded", {"request": {"input_format": "encoded",
                                "template": '{"foo":"{{name .. " world"}}","bar":{{age+10}}}'}}),
    _bt("args", {"request": {"input_format": "args",
                             "template": '{"message": "hello {{name}}"}'}}),
    _bt("plain", {"request": {"input_format": "plain", "template":
                              '{"message": "{* string.gsub(_body, "not ", "") *}"}'}}),
    _bt("wrong-format", {"request": {"input_format": "xml", "template":
                                     '{"foo":"{{name .. " world"}}","bar":{{age+10}}}'}}),
    _bt("bad-call", {"request": {"template":
                                 '{"foo":"{{name() .. " world"}}","bar":{{age+10}}}'}}),
    _bt("escape", {"request": {"template": '{"agent":"{{_ctx.var.http_user_agent}}",'
                                           '"raw":"{*_ctx.var.http_user_agent*}"}'}}),
    _bt("escape-json", {"request": {"input_format": "json",
                                    "template": '{"foobar":{*_escape_json(name)*}}'}}),
    _bt("escape-xml", {"request": {"input_format": "json",
                                   "template": "<foobar>{*_escape_xml(name)*}</foobar>"}}),
    _bt("loop", {"request": {"input_format": "json", "template":
                             '[{% for i, item in ipairs(items) do %}{% if i > 1 then %},'
                             '{% end %}"{{i}}:{{item.id}}"{% end %}]'}}),
    _bt("multipart", {"request": {"template": '{"name":"{{name}}","age":{{age + 1}},'
                                              '"tags":{{#tag}}}'}}),
    _bt("b64-flag", {"request": {"input_format": "encoded", "template_is_base64": True,
                                 "template": _b64('{"n":"{{name}}"}')}}),
    _bt("small", {"max_req_body_size": 8, "request": {"template": "{{name}}"}}),
    _bt("resp-json", {"response": {"template": '{"method":"{{method}}","path":"{*path*}",'
                                               '"many":{{headers["x-many"] or 0}},'
                                               '"ua":{{headers["user-agent"] ~= nil}}}'}}),
    _bt("resp-big", {"response": {"input_format": "json",
                                  "template": '{"len":{{#body}},"tail":"{{body:sub(-3)}}"}'}}),
    _bt("resp-cut", {"max_resp_body_size": 40,
                     "response": {"input_format": "plain", "template": "[{*_body*}]"}}),
    _bt("resp-broken", {"response": {"template": '{"n":{{#headers["x-many"]}}}'}}),
]}


@pytest.fixture(scope="module")
def kit():
    with Kit(DOC, admin_key="bt-admin") as k:
        k.upstream.behaviour = _soap
        yield k


def _last(kit: Kit) -> dict[str, Any]:
    return kit.last_upstream_request()


def test_doc_soap_json_to_xml_and_back(kit):
    r = kit.post("/ws", '{"name": "Spain"}')
    assert r.status == 200
    assert r.json() == {"status": "200", "currency": "EUR", "population": 46704314,
                        "capital": "Madrid", "name": "Spain"}
    sent = _last(kit)
    assert sent["body"] == REQ_TEMPLATE.replace("{{_escape_xml(name)}}", "Spain")
    assert sent["headers"]["content-length"] == str(len(sent["body"]))
    # the body changed: no stale length, and what arrives is exactly the JSON
    assert r.headers.get("content-length") in (None, str(len(r.body)))


def test_doc_soap_fault_branch(kit):
    r = kit.post("/ws", '{"name": "Mars"}')
    assert r.status == 500
    assert r.json() == {"message": 'Your country "Mars" is not supported',
                        "code": "SOAP-ENV:Server"}


def test_base64_templates_of_apisix_test_file(kit):
    r = kit.post("/ws-b64", '{"name": "Spain"}', headers={"Content-Type": "application/json"})
    assert r.status == 200
    assert json.loads(r.body) == {"status": "200", "currency": "EUR", "population": 46704314,
                                  "capital": "Madrid", "name": "Spain"}
    assert "<ns0:name>Spain</ns0:name>" in _last(kit)["body"]


def test_modify_request_body(kit):
    r = kit.post("/modify", {"name": "hello", "age": 20})
    assert r.status == 200
    assert json.loads(_last(kit)["body"]) == {"foo": "hello world", "bar": 30}


def test_generate_body_from_variables_on_get(kit):
    assert kit.get("/vars?name=hello").status == 200
    assert json.loads(_last(kit)["body"]) == {"foo": "hello world"}


def test_form_encoded_to_json(kit):
    kit.post("/encoded", "name=hello&age=20",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(_last(kit)["body"]) == {"foo": "hello world", "bar": 30}


def test_get_query_to_body(kit):
    assert kit.get("/args?name=john").status == 200
    assert _last(kit)["body"] == '{"message": "hello john"}'


def test_plain_body_with_string_gsub(kit):
    kit.post("/plain", "not actually json")
    assert _last(kit)["body"] == '{"message": "actually json"}'


def test_wrong_input_format_is_400(kit):
    before = len(kit.upstream.requests)
    r = kit.post("/wrong-format", {"name": "hello", "age": 20})
    assert r.status == 400
    assert r.json()["message"].startswith("request body decode: Error Parsing XML")
    assert "Error Parsing XML" in kit.log()
    assert len(kit.upstream.requests) == before


def test_calling_a_string_is_503_with_luas_words(kit):
    r = kit.post("/bad-call", {"name": "hello", "age": 20})
    assert r.status == 503
    assert r.json() == {"message": "request template rendering: attempt to call global "
                                   "'name' (a string value)"}


def test_double_braces_html_escape_star_braces_do_not(kit):
    kit.get("/escape", headers={"User-Agent": "curl/8.0 <x>"})
    assert json.loads(_last(kit)["body"]) == {"agent": "curl&#47;8.0 &lt;x&gt;",
                                              "raw": "curl/8.0 <x>"}


def test_escape_json_and_escape_xml(kit):
    kit.post("/escape-json", '{"name":"hello \\"world\\""}')
    assert json.loads(_last(kit)["body"]) == {"foobar": 'hello "world"'}
    kit.post("/escape-xml", '{"name":"<nil>"}')
    assert _last(kit)["body"] == "<foobar>&lt;nil&gt;</foobar>"


def test_loops_and_one_based_indexing(kit):
    kit.post("/loop", {"items": [{"id": "a"}, {"id": "b"}, {"id": "c"}]})
    assert json.loads(_last(kit)["body"]) == ["1:a", "2:b", "3:c"]


def test_multipart_fields_by_content_type(kit):
    body = ("--XyZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nAlice\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"age\"\r\n\r\n41\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\na\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nb\r\n"
            "--XyZ--\r\n")
    r = kit.post("/multipart", body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.status == 200
    assert json.loads(_last(kit)["body"]) == {"name": "Alice", "age": 42, "tags": 2}


def test_template_is_base64(kit):
    kit.post("/b64-flag", "name=bob", headers={"Content-Type": "text/plain"})
    assert _last(kit)["body"] == '{"n":"bob"}'


def test_escape_xml_inside_double_braces_escapes_twice_as_apisix(kit):
    kit.post("/ws", '{"name": "A&B {x}"}')
    assert "<ns0:name>A&amp;amp;B &#123;x&#125;</ns0:name>" in _last(kit)["body"]


def test_request_body_over_max_req_body_size_is_413(kit):
    r = kit.post("/small", {"name": "a long enough name"})
    assert r.status == 413


def test_response_json_transformed_by_content_type(kit):
    r = kit.get("/resp-json")
    assert r.status == 200
    assert r.json() == {"method": "GET", "path": "/resp-json", "many": 0, "ua": False}
    assert r.headers.get("content-length") in (None, str(len(r.body)))
    assert kit.get("/resp-json", headers={"X-Many": "3"}).json()["many"] == 3


def test_response_in_many_chunks_is_buffered_then_transformed(kit):
    big = "x" * 300_000 + "end"
    r = kit.post("/resp-big", big)
    assert r.status == 200
    assert r.json() == {"len": len(big), "tail": "end"}


def test_response_over_max_resp_body_size_is_truncated(kit):
    r = kit.post("/resp-cut", "y" * 100_000)
    assert r.status == 200
    # the first 40 bytes of the upstream's 100 kB answer, transformed once
    assert len(r.body) == 42 and r.body.startswith(b'[{"method": "POST"')
    assert r.body.endswith(b"]")


def test_response_that_cannot_be_transformed_is_sent_as_it_came(kit):
    r = kit.get("/resp-broken")
    assert r.status == 200
    assert r.json()["path"] == "/resp-broken"           # the upstream's own body, whole
    assert "response template rendering: attempt to get length of a nil value" in kit.log()


def test_bad_templates_are_refused_by_the_admin_api(kit):
    def put(conf: dict[str, Any]) -> Any:
        return kit.admin("PUT", "/routes/bad", {"uri": "/bad", "plugins": {
            "body-transformer": conf}, "upstream": {"nodes": {"127.0.0.1:1": 1}}})
    prefix = "failed to check the configuration of plugin body-transformer err: "
    r = put({"request": {"template": '{% local yaml = require("tinyyaml") %}{{yaml}}'}})
    assert r.status == 400
    assert r.json()["error_msg"] == prefix + "request template: 'require' is not available " \
                                             "in Pylon's body-transformer templates"
    r = put({"response": {"template": "{% if x then %}open"}})
    assert r.status == 400
    assert r.json()["error_msg"] == prefix + "response template: 'end' expected (to close 'if')"
    r = put({"request": {"template": "{{x}}", "input_format": "yaml"}})
    assert r.status == 400
    assert r.json()["error_msg"].startswith(prefix)
    r = put({"max_req_body_size": 10})
    assert r.status == 400
    assert put({"request": {"template": "{{x}}"}}).status in (200, 201)

from tests.harness import route_doc


def test_request_is_proxied_with_forwarded_headers(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream]))
    status, headers, body = gw.get("/hello?x=1", headers={"X-Forwarded-For": "10.0.0.1"})
    assert status == 200
    seen = upstream.requests[-1]
    assert seen["path"] == "/hello?x=1"
    assert seen["headers"]["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-port"] == str(gw.port)


def test_unknown_path_gets_404_route_not_found(gateway_factory, upstream):
    gw = gateway_factory(route_doc([upstream], uri="/only"))
    status, headers, body = gw.get("/other")
    assert status == 404
    assert body == b'{"error_msg":"404 Route Not Found"}'

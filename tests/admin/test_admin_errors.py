"""One error tree, one mapping to HTTP: what a handler raises, ``answer`` replies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pylon import errors
from pylon.admin.app import answer
from pylon.config.store import Conflict, StoreError
from pylon.proxy.registry import PluginConfigError
from pylon.routing.expr import ExprError
from pylon.routing.router import RouterError


def reply_for(exc: BaseException) -> Any:
    async def handler() -> Any:
        raise exc

    return asyncio.run(answer(handler(), "PUT /apisix/admin/routes/1"))


@pytest.mark.parametrize(("exc", "status"), [
    (errors.InvalidRequest("missing route id"), 400),
    (errors.Unauthorized("failed to check token"), 401),
    (errors.Forbidden("403 Forbidden"), 403),
    (errors.NotFound("not found"), 404),
    (errors.MethodNotAllowed("batch takes POST"), 405),
    (errors.Unavailable("explain is not available on this node"), 503),
])
def test_a_refusal_a_handler_raises_is_answered_with_its_status_and_text(
        exc: errors.AdminError, status: int) -> None:
    assert reply_for(exc) == (status, {"error_msg": exc.error_msg})


def test_extra_members_of_the_body_are_kept() -> None:
    exc = errors.Unauthorized("failed to check token", description="wrong key")
    assert reply_for(exc) == (401, {"error_msg": "failed to check token",
                                    "description": "wrong key"})


def test_a_missing_object_is_apisix_key_not_found() -> None:
    assert reply_for(errors.KeyNotFound()) == (404, {"message": "Key not found"})


def test_within_a_batch_the_refusal_keeps_its_status_and_names_the_operation() -> None:
    err = errors.KeyNotFound().within("operations[1] (DELETE /routes/9): ")
    assert reply_for(err) == (404, {"error_msg": "operations[1] (DELETE /routes/9): "
                                                 "Key not found"})
    err = errors.InvalidRequest("wrong route id").within("operations[0]: ")
    assert reply_for(err) == (400, {"error_msg": "operations[0]: wrong route id"})


def test_store_and_check_errors_map_in_the_same_place() -> None:
    conflict = Conflict("routes/1")
    assert reply_for(conflict) == (503, {"error_msg": str(conflict)})
    assert reply_for(StoreError("etcd is down")) == \
        (503, {"error_msg": "failed to store the configuration: etcd is down"})
    for exc in (PluginConfigError("bad conf"), RouterError("1", "bad uri"), ExprError("bad op")):
        assert reply_for(exc)[0] == 400


def test_an_unexpected_exception_is_answered_500_internal_error() -> None:
    assert reply_for(RuntimeError("bug")) == (500, {"error_msg": "internal error"})


def test_every_admin_error_is_a_pylon_error() -> None:
    for cls in (errors.InvalidRequest, errors.KeyNotFound, errors.Unavailable):
        assert issubclass(cls, errors.AdminError) and issubclass(cls, errors.PylonError)

"""The wire protocol between the control plane and a pool agent (`llorch-pool serve --stdio`).

One JSON document per line, in both directions. Both sides import these models, so the
models *are* the protocol. PROTOCOL_VERSION changes on any incompatible change; the client
refuses an agent whose hello line carries another major version instead of misreading it.

    agent -> client   {"v":1,"type":"hello","agent_version":"0.1.0","pool_id":"local","ops":[...]}
    client -> agent   {"v":1,"id":"7","op":"models.list","params":{}}
    client -> agent   {"v":1,"id":"8","op":"$cancel","params":{"target":"7"}}
    agent -> client   {"v":1,"id":"7","type":"event","event":"progress","data":{...}}   (0..n)
    agent -> client   {"v":1,"id":"7","type":"result","result":{...}}                    (exactly one of
    agent -> client   {"v":1,"id":"7","type":"error","error":{"code","message","hint"}}   these two)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PROTOCOL_VERSION = 1

Backend = Literal["cpu", "cuda", "metal"]
BACKENDS: tuple[str, ...] = ("cpu", "cuda", "metal")


class WireModel(BaseModel):
    """Base of every wire model: unknown fields from a newer peer are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ErrorDoc(WireModel):
    code: str
    message: str
    hint: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class Hello(WireModel):
    v: int = PROTOCOL_VERSION
    type: Literal["hello"] = "hello"
    agent_version: str
    pool_id: str
    hostname: str = ""
    ops: list[str] = Field(default_factory=list)


class Request(WireModel):
    v: int = PROTOCOL_VERSION
    id: str
    op: str
    params: dict[str, Any] = Field(default_factory=dict)


class EventMsg(WireModel):
    v: int = PROTOCOL_VERSION
    id: str
    type: Literal["event"] = "event"
    event: str
    data: dict[str, Any] = Field(default_factory=dict)


class ResultMsg(WireModel):
    v: int = PROTOCOL_VERSION
    id: str
    type: Literal["result"] = "result"
    result: Any = None


class ErrorMsg(WireModel):
    v: int = PROTOCOL_VERSION
    id: str
    type: Literal["error"] = "error"
    error: ErrorDoc


CANCEL_OP = "$cancel"


class CancelParams(WireModel):
    """The params of a `$cancel` request: the id of the call to cancel."""

    target: str

"""Events the matrix engine yields, in this order:

    PlanReady  (once: every planned cell, skipped ones included, with the pools it saw)
    CellStarted / CellProgress* / CellFinished   (per cell; cells of different pools interleave)
      - a cell skipped at plan time gets just CellFinished (verdict "skipped"), right after PlanReady
    RunFinished (once, last: summary + paths of the reports written)

Each is a pydantic model with a `type` tag, so `event.model_dump_json()` is the `--json` line and
`parse_event(json)` reads one back. Consumers dispatch with `match event: case CellFinished(): ...`.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, TypeAdapter

from llorch_tui.protocol.matrix import CellKey, CellResult, PoolInfo, RunSummary, Stage


class PlanReady(BaseModel):
    type: Literal["plan"] = "plan"
    cells: list[CellKey]
    pools: list[PoolInfo] = Field(default_factory=list)


class CellStarted(BaseModel):
    type: Literal["cell_started"] = "cell_started"
    key: CellKey


class CellProgress(BaseModel):
    """A stage change or progress inside one (fraction 0..1 when known, e.g. download bytes)."""

    type: Literal["cell_progress"] = "cell_progress"
    key: CellKey
    stage: Stage
    fraction: float | None = None
    detail: str = ""


class CellFinished(BaseModel):
    type: Literal["cell_finished"] = "cell_finished"
    result: CellResult

    @property
    def key(self) -> CellKey:
        return self.result.key


class RunFinished(BaseModel):
    type: Literal["run_finished"] = "run_finished"
    summary: RunSummary
    reports: dict[str, str] = Field(default_factory=dict)  # format (markdown/json/junit/diff) -> path
    stopped: bool = False  # True when stop() or a cancel ended the run early
    report_error: str | None = None  # the reports could not be written: why (the results are still here)


MatrixEvent = Annotated[Union[PlanReady, CellStarted, CellProgress, CellFinished, RunFinished],
                        Field(discriminator="type")]
_ADAPTER: TypeAdapter[MatrixEvent] = TypeAdapter(MatrixEvent)


def parse_event(data: str | bytes) -> MatrixEvent:
    return _ADAPTER.validate_json(data)

"""JUnit XML: one testcase per cell (classname llorch.matrix.<pool>.<backend>[.<dtype>], name = model), with
<properties>: the dtype computed in, the parity certificate (parity.*), the environment (env.*) and, with
--bench, the benchmark figures (bench.*)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from llorch_tui.matrix.reports.bench_tables import bench_properties
from llorch_tui.matrix.reports.certificates import junit_properties
from llorch_tui.protocol.matrix import DEFAULT_DTYPE, MatrixReport


def _clean(text: str) -> str:
    # XML 1.0 forbids most control characters; a worker log may contain them.
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def junit_xml(report: MatrixReport) -> str:
    s = report.summary
    cells = report.cells
    total_time = sum(c.measurements.cell_s or 0.0 for c in cells)
    root = ET.Element("testsuites", name="llorch-matrix", tests=str(len(cells)), failures=str(s.failed),
                      skipped=str(s.skipped), errors="0", time=f"{total_time:.3f}")
    suite = ET.SubElement(root, "testsuite", name="llorch-matrix", tests=str(len(cells)), failures=str(s.failed),
                          skipped=str(s.skipped), errors="0", time=f"{total_time:.3f}",
                          timestamp=report.started_at.strftime("%Y-%m-%dT%H:%M:%S"))
    for c in cells:
        dtype = "" if c.key.dtype == DEFAULT_DTYPE else f".{c.key.dtype}"
        tc = ET.SubElement(suite, "testcase", classname=f"llorch.matrix.{c.key.pool}.{c.key.backend}{dtype}",
                           name=c.key.model, time=f"{c.measurements.cell_s or 0.0:.3f}")
        props = junit_properties(c) + bench_properties(c)
        if props:
            el_props = ET.SubElement(tc, "properties")
            for name, value in props:
                ET.SubElement(el_props, "property", name=name, value=_clean(value))
        if c.verdict == "fail":
            el = ET.SubElement(tc, "failure", message=_clean(c.reason or "failed"), type=c.reason_code or "fail")
            body = [c.reason or ""]
            if c.hint:
                body.append(f"hint: {c.hint}")
            if c.exit_code is not None:
                body.append(f"exit code: {c.exit_code}")
            if c.log_tail:
                body += ["--- worker log tail ---", *c.log_tail]
            el.text = _clean("\n".join(body))
        elif c.verdict == "skipped":
            ET.SubElement(tc, "skipped", message=_clean(f"{c.reason_code}: {c.reason or ''}"))
        out = ET.SubElement(tc, "system-out")
        out.text = _clean(json.dumps(c.measurements.model_dump(exclude_none=True), ensure_ascii=False))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

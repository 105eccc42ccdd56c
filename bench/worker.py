#!/usr/bin/env python
"""Worker benchmark (a script, not a test). Everything is measured side by side in one run:

(a) single-stream tokens/s of the worker  ÷  raw `model.generate` in one process   (goal >= 0.97)
    (and ÷ a bare hand-written greedy loop, the floor of any overhead)
(b) a burst of N concurrent requests  ÷  the same N sequential, aggregate tokens/s    (goal >= 4x)
(c) the same burst against our worker  ÷  `transformers serve --continuous-batching`  (goal >= 1.0x)

Runs are interleaved (raw, worker, raw, worker, ...) and the median is reported, because other
processes share the CPU. Usage: `.venv/bin/python bench/worker.py [--model DIR] [--reps 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

PROMPTS = [f"Request {i}: tell me about the pool number {i} and its models." for i in range(32)]
# --backend / --dtype: the same device and dtype for the worker, the raw baseline and transformers serve.
TARGET = {"backend": "cpu", "dtype": "float32"}
SERVE_DEVICE = {"cpu": "cpu", "cuda": "cuda", "metal": "mps"}


def start_worker(model: Path, max_batch: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "llorch_worker", "--worker-id", "bench", "--model", str(model),
                             "--backend", TARGET["backend"], "--port", "0", "--dtype", TARGET["dtype"],
                             "--max-batch", str(max_batch)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "LLORCH_WORKER_LOG": "WARNING"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("LLORCH_WORKER_READY "):
            return proc, f"http://127.0.0.1:{json.loads(line.split(' ', 1)[1])['port']}"
    raise SystemExit(f"worker failed to start (rc={proc.wait()})")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def worker_request(s: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> int:
    from llorch_worker.api import ExecuteRequest

    from llorch_tui.worker_client import WorkerClient

    done = await WorkerClient(s, url).execute(ExecuteRequest(prompt=prompt, max_tokens=max_tokens, ignore_eos=True))
    return done.tokens_generated


SERVE_MODEL = {"name": "bench"}  # transformers serve pinned to a path wants that path as the model


async def openai_request(s: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> int:
    # Raw aiohttp on purpose: this arm is `transformers serve`, whose answers are not the worker's contract.
    # no ignore_eos (transformers serve rejects unknown fields); the synthetic model's end-of-sequence
    # logit is zero, so greedy runs reach max_tokens anyway, and tokens are counted from usage
    body = {"model": SERVE_MODEL["name"], "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    async with s.post(f"{url}/v1/completions", json=body) as r:
        data = await r.json()
        assert r.status == 200, data
        return int(data["usage"]["completion_tokens"])


async def burst(url: str, n: int, max_tokens: int, concurrent: bool, api: str = "worker") -> float:
    """Aggregate tokens/s of n requests, all at once or one after another."""
    call = worker_request if api == "worker" else openai_request
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as s:
        t0 = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*(call(s, url, PROMPTS[i], max_tokens) for i in range(n)))
        else:
            counts = [await call(s, url, PROMPTS[i], max_tokens) for i in range(n)]
        return sum(counts) / (time.perf_counter() - t0)


def raw_generate_tps(model: Any, tok: Any, max_tokens: int) -> float:
    import torch

    ids = torch.tensor([tok(PROMPTS[0], add_special_tokens=False)["input_ids"]], device=model.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    n = out.shape[1] - ids.shape[1]
    sync(model)
    return n / (time.perf_counter() - t0)


def sync(model: Any) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def raw_loop_tps(model: Any, tok: Any, max_tokens: int) -> float:
    """The floor: a minimal greedy loop on one DynamicCache, no HTTP, no scheduler, no detokenizer."""
    import torch
    from transformers import DynamicCache

    ids = torch.tensor([tok(PROMPTS[0], add_special_tokens=False)["input_ids"]], device=model.device)
    params = __import__("inspect").signature(model.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    t0 = time.perf_counter()
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids, use_cache=True, **{kw: cache})
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(max_tokens - 1):
            out = model(input_ids=nxt, use_cache=True, **{kw: cache})
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    sync(model)
    return max_tokens / (time.perf_counter() - t0)


class RawChild:
    """The in-process baselines run in a clean child process (only torch + the model, no event
    loop, no synthesis, no HTTP client): measured here, the bench's own process ran them 2-5x
    slower than a fresh process, which would flatter the worker."""

    def __init__(self, model: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--raw-child", str(model), "--backend",
                                      TARGET["backend"], "--dtype", TARGET["dtype"]], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("raw baseline process failed to start")

    def measure(self, tokens: int) -> dict[str, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{tokens}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        stop(self.proc)


def raw_child_main(model: str) -> int:
    import torch
    import transformers

    from llorch_worker.engine import configure_threads, resolve_device

    configure_threads()
    transformers.utils.logging.disable_progress_bar()
    tok = transformers.AutoTokenizer.from_pretrained(model)
    device = resolve_device(TARGET["backend"], 0)
    m = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, TARGET["dtype"])).to(device).eval()
    raw_generate_tps(m, tok, 8)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        print(json.dumps({"generate": raw_generate_tps(m, tok, n), "loop": raw_loop_tps(m, tok, n)}), flush=True)
    return 0


def start_serve(model: Path) -> tuple[subprocess.Popen[Any], str] | None:
    exe = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    if not Path(exe).exists():
        return None
    port = _free_port()
    proc = subprocess.Popen([exe, "serve", "--continuous-batching", "--host", "127.0.0.1", "--port", str(port),
                             "--device", SERVE_DEVICE[TARGET["backend"]], "--dtype", TARGET["dtype"], str(model)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    SERVE_MODEL["name"] = str(model)

    async def wait_up() -> bool:
        async with aiohttp.ClientSession() as s:
            for _ in range(1200):  # up to ~10 minutes on a busy 2-core machine
                if proc.poll() is not None:
                    return False
                try:
                    await openai_request(s, url, "warm up", 4)
                    return True
                except aiohttp.ClientError:
                    await asyncio.sleep(0.5)  # not listening yet
                except (AssertionError, KeyError) as e:
                    print(f"transformers serve rejected the request: {e}", file=sys.stderr)
                    return False
        return False

    if not asyncio.run(wait_up()):
        stop(proc)
        return None
    return proc, url


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="checkpoint dir (default: a synthetic small llama)")
    p.add_argument("--tokens", type=int, default=128, help="tokens per single-stream request")
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--burst-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--skip-serve", action="store_true", help="skip (c), transformers serve")
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda", "metal"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    p.add_argument("--raw-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    TARGET.update(backend=args.backend, dtype=args.dtype)
    if args.raw_child:
        return raw_child_main(args.raw_child)

    tmp = None
    model = args.model
    if model is None:
        tmp = tempfile.mkdtemp(prefix="llorch-bench-")
        model = Path(tmp) / "small-llama"
        # a subprocess, as the pool agent does: torch work in this process left it (and the
        # measurements next to it) measurably slower in earlier runs
        out = subprocess.run([sys.executable, "-m", "llorch_worker.synth", "--out", str(model), "--architecture",
                              "llama", "--size", "small", "--json"], check=True, capture_output=True, text=True)
        info = json.loads(out.stdout)
        print(f"synthetic small llama: {info['params'] / 1e6:.1f}M params", flush=True)
    from importlib.metadata import version

    results: dict[str, Any] = {"model": str(model), "cpu_count": os.cpu_count(),
                               "threads": len(os.sched_getaffinity(0)),
                               "torch": version("torch"), "transformers": version("transformers")}
    raw_child = RawChild(model)
    proc, url = start_worker(model, max_batch=max(16, args.burst))
    serve = None
    try:
        asyncio.run(burst(url, 1, 8, False))  # warm the HTTP path
        raw, loop, wrk = [], [], []
        for _ in range(args.reps):
            r = raw_child.measure(args.tokens)
            wrk.append(asyncio.run(burst(url, 1, args.tokens, False)))
            raw.append(r["generate"])
            loop.append(r["loop"])
        results["a_raw_generate_tps"] = statistics.median(raw)
        results["a_raw_loop_tps"] = statistics.median(loop)
        results["a_worker_tps"] = statistics.median(wrk)
        results["a_ratio"] = results["a_worker_tps"] / results["a_raw_generate_tps"]
        results["a_ratio_vs_loop"] = results["a_worker_tps"] / results["a_raw_loop_tps"]
        print(f"(a) single stream: worker {results['a_worker_tps']:.1f} tok/s vs raw generate "
              f"{results['a_raw_generate_tps']:.1f} tok/s -> {results['a_ratio']:.3f}x (goal >= 0.97); "
              f"vs a bare greedy loop {results['a_raw_loop_tps']:.1f} tok/s -> {results['a_ratio_vs_loop']:.3f}x",
              flush=True)

        seq, conc = [], []
        for _ in range(args.reps):
            seq.append(asyncio.run(burst(url, args.burst, args.burst_tokens, False)))
            conc.append(asyncio.run(burst(url, args.burst, args.burst_tokens, True)))
        results["b_sequential_tps"] = statistics.median(seq)
        results["b_burst_tps"] = statistics.median(conc)
        results["b_ratio"] = results["b_burst_tps"] / results["b_sequential_tps"]
        print(f"(b) burst of {args.burst}: {results['b_burst_tps']:.1f} tok/s vs sequential "
              f"{results['b_sequential_tps']:.1f} tok/s -> {results['b_ratio']:.2f}x (goal >= 4x)", flush=True)

        raw_child.close()  # free its memory before a third model process starts
        if not args.skip_serve:
            serve = start_serve(model)
        if serve is None:
            results["c_ratio"] = None
            print("(c) transformers serve --continuous-batching: not available or failed to start; skipped")
        else:
            ours, theirs = [], []
            for _ in range(args.reps):
                ours.append(asyncio.run(burst(url, args.burst, args.burst_tokens, True)))
                theirs.append(asyncio.run(burst(serve[1], args.burst, args.burst_tokens, True, api="openai")))
            results["c_worker_burst_tps"] = statistics.median(ours)
            results["c_serve_burst_tps"] = statistics.median(theirs)
            results["c_ratio"] = results["c_worker_burst_tps"] / results["c_serve_burst_tps"]
            print(f"(c) burst of {args.burst}: worker {results['c_worker_burst_tps']:.1f} tok/s vs transformers "
                  f"serve --continuous-batching {results['c_serve_burst_tps']:.1f} tok/s -> "
                  f"{results['c_ratio']:.2f}x (goal >= 1.0x)", flush=True)
    finally:
        raw_child.close()
        stop(proc)
        if serve is not None:
            stop(serve[0])
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    results.update(backend=args.backend, dtype=args.dtype)
    print(json.dumps(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

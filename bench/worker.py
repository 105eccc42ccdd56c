#!/usr/bin/env python
"""Worker benchmark (a script, not a test). Everything is measured side by side in one run:

(a) single-stream tokens/s of the worker  ÷  raw `model.generate` in one process   (goal >= 0.97)
    (and ÷ a bare hand-written greedy loop, the floor of any overhead; and the worker's own decode
    path run in the baseline's process on the same model, which tells the serving code's cost from
    the HTTP and process costs). All arms decode the same prompt ids (the worker's tokenization).
    `--single-only` runs (a) alone.
(b) a burst of N concurrent requests  ÷  the same N sequential, aggregate tokens/s    (goal >= 4x)
(pp/tg) llama-bench style, per server: pp = a prompt of exactly P tokens for one token (client wall
    time), tg = the decode rate of a streamed request for exactly G tokens; mean ± σ over the reps
(levels) our worker  ÷  `transformers serve --continuous-batching` at concurrency 1/4/10/16, streaming
    and non-streaming: throughput (goal >= 1.2x at 10, >= 1.0x elsewhere), TTFT, TPOT and ITL
    p50/p90/p99 (definitions: llorch_tui/bench_metrics.py, docs/benchmarks.md)

Fairness: both servers get the same prompts (P tokens each, distinct per request), the same
max_tokens, greedy decoding, the same dtype and the same number of torch threads (--threads), and
are measured the same way, by this client's wall clock over /v1/completions. Runs are interleaved
(worker, serve, serve, worker, ...) and medians reported, because other processes share the CPU; the
load average is printed next to each figure. Usage: `.venv/bin/python bench/worker.py [--quick]
[--model DIR] [--reps 5]`.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from llorch_tui.bench_metrics import RequestTiming, fmt_mean_sd, level_summary, mean_sd, pp_tps  # noqa: E402

PROMPTS = [f"Request {i}: tell me about the pool number {i} and its models." for i in range(32)]
# --backend / --dtype / --threads: the same for the worker, the raw baseline and transformers serve.
TARGET: dict[str, Any] = {"backend": "cpu", "dtype": "float32", "threads": 0}
SERVE_DEVICE = {"cpu": "cpu", "cuda": "cuda", "metal": "mps"}
FILLER = ("the pool keeps its models warm while the control room watches every worker and its memory "
          "figures across the fleet of machines reached over ssh").split()


def thread_env() -> dict[str, str]:
    """torch reads OMP_NUM_THREADS (transformers serve, raw child); the worker reads its own variable."""
    n = str(TARGET["threads"])
    return {**os.environ, "OMP_NUM_THREADS": n, "LLORCH_WORKER_THREADS": n}


def start_worker(model: Path, max_batch: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "llorch_worker", "--worker-id", "bench", "--model", str(model),
                             "--backend", TARGET["backend"], "--port", "0", "--dtype", TARGET["dtype"],
                             "--max-batch", str(max_batch)],
                            stdout=subprocess.PIPE, text=True, env={**thread_env(), "LLORCH_WORKER_LOG": "WARNING"})
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


class Server:
    """One OpenAI-compatible server under test, driven the same way whichever it is: raw aiohttp on
    /v1/completions for both arms on purpose (the fairness rule: the same client code measures both;
    `transformers serve`'s answers are not the worker's contract, so WorkerClient cannot read them)."""

    def __init__(self, name: str, url: str, extra: dict[str, Any]) -> None:
        self.name, self.url, self.extra = name, url, extra

    def body(self, prompt: str, max_tokens: int, stream: bool) -> dict[str, Any]:
        # greedy for both; transformers serve rejects unknown fields, so `ignore_eos` goes to our worker
        # only (the synthetic models practically never choose end-of-sequence: checked per request below)
        b: dict[str, Any] = {"model": SERVE_MODEL["name"], "prompt": prompt, "max_tokens": max_tokens,
                             "temperature": 0, **self.extra}
        if stream:
            b.update(stream=True, stream_options={"include_usage": True})
        return b

    async def request(self, s: aiohttp.ClientSession, prompt: str, max_tokens: int, stream: bool) -> RequestTiming:
        t = RequestTiming(sent=time.perf_counter())
        async with s.post(f"{self.url}/v1/completions", json=self.body(prompt, max_tokens, stream)) as r:
            if r.status != 200:
                raise SystemExit(f"{self.name} answered {r.status}: {await r.text()}")
            if not stream:
                usage = (await r.json())["usage"]
            else:
                usage = {}
                async for line in r.content:
                    if not line.startswith(b"data: {"):
                        continue
                    now = time.perf_counter()
                    doc = json.loads(line[6:])
                    if doc.get("usage"):
                        usage = doc["usage"]
                    if any(c.get("text") for c in doc.get("choices") or []):
                        t.chunks.append(now)
            t.done = time.perf_counter()
        t.tokens, t.prompt_tokens = int(usage.get("completion_tokens", 0)), int(usage.get("prompt_tokens", 0))
        if t.tokens != max_tokens and max_tokens > 1:
            print(f"  note: {self.name} generated {t.tokens} of {max_tokens} tokens", file=sys.stderr)
        return t

    async def level(self, prompts: list[str], max_tokens: int, stream: bool) -> list[RequestTiming]:
        """len(prompts) requests sent at once (a burst at that concurrency)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as s:
            return list(await asyncio.gather(*(self.request(s, p, max_tokens, stream) for p in prompts)))


async def openai_request(s: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int) -> int:
    t = await Server("serve", url, {}).request(s, prompt, max_tokens, False)
    return t.tokens


def worker_single(url: str, pid: int, tokens: int) -> tuple[float, float]:
    """One request over HTTP: (tokens per client wall second, tokens per CPU second of the worker
    process: its decode thread, event loop and HTTP server together)."""
    import psutil

    proc = psutil.Process(pid)
    before = proc.cpu_times()
    wall = asyncio.run(burst(url, 1, tokens, False))
    after = proc.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    return wall, tokens / max(cpu, 1e-9)


async def burst(url: str, n: int, max_tokens: int, concurrent: bool) -> float:
    """Aggregate tokens/s of n requests to our worker's native route, all at once or one after another."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1800)) as s:
        t0 = time.perf_counter()
        if concurrent:
            counts = await asyncio.gather(*(worker_request(s, url, PROMPTS[i], max_tokens) for i in range(n)))
        else:
            counts = [await worker_request(s, url, PROMPTS[i], max_tokens) for i in range(n)]
        return sum(counts) / (time.perf_counter() - t0)


async def fixed_prompts(url: str, n_tokens: int, count: int) -> list[str]:
    """`count` distinct texts of exactly n_tokens tokens each (as the model's tokenizer counts them, the
    special tokens it adds included), built by adding words until the count is reached: both servers
    tokenize text the same way, so both prefill exactly n_tokens per request."""
    out: list[str] = []
    async with aiohttp.ClientSession() as s:
        async def count_of(text: str) -> int:
            async with s.post(f"{url}/tokenize", json={"prompt": text}) as r:
                return int((await r.json())["count"])

        for i in range(count):
            text = f"Request {i}:"
            k = i
            while True:
                n = await count_of(text)
                if n == n_tokens:
                    break
                if n > n_tokens:  # the last word took two tokens past the goal: try another word
                    text = text.rsplit(" ", 1)[0]
                    k += 1
                    if k > i + 4 * len(FILLER):
                        raise SystemExit(f"cannot build a prompt of exactly {n_tokens} tokens")
                text += " " + FILLER[k % len(FILLER)]
                k += 1
            out.append(text)
    return out


def load() -> str:
    return "load {:.1f}".format(os.getloadavg()[0])


def raw_generate_tps(model: Any, ids: list[int], pad_id: int, max_tokens: int) -> tuple[float, float]:
    import torch

    prompt = torch.tensor([ids], device=model.device)
    CLOCK["cpu"] = time.process_time()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(prompt, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=pad_id)
    n = out.shape[1] - prompt.shape[1]
    sync(model)
    return _rates(n, t0)


def sync(model: Any) -> None:
    import torch

    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)


def raw_loop_tps(model: Any, ids: list[int], max_tokens: int) -> tuple[float, float]:
    """The floor: a minimal greedy loop on one DynamicCache, no HTTP, no scheduler, no detokenizer."""
    import torch
    from transformers import DynamicCache

    prompt = torch.tensor([ids], device=model.device)
    params = __import__("inspect").signature(model.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    CLOCK["cpu"] = time.process_time()
    t0 = time.perf_counter()
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=prompt, use_cache=True, **{kw: cache})
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(max_tokens - 1):
            out = model(input_ids=nxt, use_cache=True, **{kw: cache})
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    sync(model)
    return _rates(max_tokens, t0)


def worker_path_tps(engine: Any, ids: list[int], max_tokens: int) -> tuple[float, float]:
    """The worker's own decode path (scheduler, cache, sampling, bookkeeping) on the same model
    object as the baselines, without HTTP: tells the serving code's cost apart from the process's."""
    from llorch_worker.jobs import Job
    from llorch_worker.metrics import Metrics
    from llorch_worker.scheduler import Scheduler

    job = Job(job_id="bench", prompt_ids=ids, max_tokens=max_tokens, emit=lambda _e: None, ignore_eos=True,
              incremental=False)
    CLOCK["cpu"] = time.process_time()
    t0 = time.perf_counter()
    Scheduler(engine, Metrics()).run_now(job)
    sync(engine.model)
    return _rates(len(job.generated), t0)


CLOCK = {"cpu": 0.0}  # process CPU time at the start of the arm being measured


def _rates(tokens: int, t0: float) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process). The CPU rate is what a
    busy machine distorts least: time spent descheduled counts in the wall clock only."""
    return tokens / (time.perf_counter() - t0), tokens / max(time.process_time() - CLOCK["cpu"], 1e-9)


class RawChild:
    """The in-process baselines run in a clean child process (only torch + the model, no event
    loop, no synthesis, no HTTP client): measured here, the bench's own process ran them 2-5x
    slower than a fresh process, which would flatter the worker."""

    def __init__(self, model: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--raw-child", str(model), "--backend",
                                      TARGET["backend"], "--dtype", TARGET["dtype"]], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=thread_env())
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("raw baseline process failed to start")

    def measure(self, tokens: int) -> dict[str, list[float]]:
        """Per arm: [tokens per wall second, tokens per CPU second]."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{tokens}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        stop(self.proc)


def raw_child_main(model: str) -> int:
    from llorch_worker.engine import Engine

    # Engine.load is a plain from_pretrained + to(device) + eval, with the worker's thread rule (the
    # bench pins it with $LLORCH_WORKER_THREADS): every arm here uses this one model object
    engine = Engine.load(Path(model), TARGET["backend"], 0, TARGET["dtype"])
    # the prompt exactly as the worker's /execute tokenizes it (special tokens included)
    ids = engine.encode(PROMPTS[0])
    raw_generate_tps(engine.model, ids, engine.pad_id, 8)
    worker_path_tps(engine, ids, 8)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        print(json.dumps({"generate": raw_generate_tps(engine.model, ids, engine.pad_id, n),
                          "loop": raw_loop_tps(engine.model, ids, n),
                          "worker_path": worker_path_tps(engine, ids, n)}), flush=True)
    return 0


def start_serve(model: Path) -> tuple[subprocess.Popen[Any], str] | None:
    try:
        import transformers.cli.transformers  # noqa: F401  (`transformers serve` needs its extras)
        import fastapi  # noqa: F401
    except ImportError as e:
        print(f"transformers serve is not available here: {e}", file=sys.stderr)
        return None
    port = _free_port()
    # through this interpreter, not a `transformers` script on PATH: a layered venv has none of its own
    launcher = "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; main()"
    proc = subprocess.Popen([sys.executable, "-c", launcher, "serve", "--continuous-batching", "--host", "127.0.0.1",
                             "--port", str(port), "--device", SERVE_DEVICE[TARGET["backend"]], "--dtype",
                             TARGET["dtype"], str(model)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=thread_env())
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
        return False

    if not asyncio.run(wait_up()):
        stop(proc)
        return None
    return proc, url


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pp_tg(servers: list[Server], prompt: str, pp_tokens: int, tg_tokens: int, reps: int) -> dict[str, Any]:
    """llama-bench's pp P and tg G per server, interleaved, mean ± σ over the reps."""
    pp: dict[str, list[float]] = {s.name: [] for s in servers}
    tg: dict[str, list[float]] = {s.name: [] for s in servers}
    for rep in range(reps):
        for srv in servers if rep % 2 == 0 else servers[::-1]:
            t = asyncio.run(srv.level([prompt], 1, False))[0]
            pp[srv.name].append(pp_tps(pp_tokens, t.done - t.sent))
            t = asyncio.run(srv.level([prompt], tg_tokens, True))[0]
            if t.decode_tps:
                tg[srv.name].append(t.decode_tps)
    out: dict[str, Any] = {}
    for srv in servers:
        out[srv.name] = {"pp_tps": mean_sd(pp[srv.name]), "tg_tps": mean_sd(tg[srv.name])}
        print(f"  {srv.name:7} pp{pp_tokens} {fmt_mean_sd(pp[srv.name])} tok/s   "
              f"tg{tg_tokens} {fmt_mean_sd(tg[srv.name])} tok/s   ({load()})", flush=True)
    return out


def levels(servers: list[Server], prompts: list[str], concurrency: list[int], gen: int, reps: int,
           stream: bool) -> list[dict[str, Any]]:
    """Each level: a burst of c requests per server and rep, interleaved (the order alternates)."""
    rows = []
    for c in concurrency:
        tps: dict[str, list[float]] = {s.name: [] for s in servers}
        pooled: dict[str, list[RequestTiming]] = {s.name: [] for s in servers}
        loads = []
        for rep in range(reps):
            for srv in servers if rep % 2 == 0 else servers[::-1]:
                timings = asyncio.run(srv.level(prompts[:c], gen, stream))
                tps[srv.name].append(float(level_summary(c, timings)["throughput_tps"]))
                pooled[srv.name] += timings
            loads.append(os.getloadavg()[0])
        row: dict[str, Any] = {"concurrency": c, "stream": stream, "load": [min(loads), max(loads)]}
        for srv in servers:
            summary: dict[str, Any] = dict(level_summary(c, pooled[srv.name]))
            summary["throughput_tps"] = statistics.median(tps[srv.name])  # per burst, not over the pooled reps
            summary["throughput_runs"] = tps[srv.name]
            row[srv.name] = summary
        line = f"  c={c:<2} {'stream' if stream else 'plain '}"
        for srv in servers:
            sm = row[srv.name]
            line += f"  {srv.name} {sm['throughput_tps']:.1f} tok/s"
            if stream:
                line += (f" [TTFT {sm['ttft_ms_p50']:.0f}/{sm['ttft_ms_p90']:.0f}/{sm['ttft_ms_p99']:.0f} "
                         f"TPOT {sm['tpot_ms_p50']:.1f}/{sm['tpot_ms_p90']:.1f}/{sm['tpot_ms_p99']:.1f} "
                         f"ITL {sm['itl_ms_p50']:.1f}/{sm['itl_ms_p90']:.1f}/{sm['itl_ms_p99']:.1f} ms]")
        if len(servers) == 2:
            row["ratio"] = row[servers[0].name]["throughput_tps"] / row[servers[1].name]["throughput_tps"]
            line += f"  -> {row['ratio']:.2f}x"
        print(line + f"  (load {min(loads):.1f}-{max(loads):.1f})", flush=True)
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, help="checkpoint dir (default: a synthetic small llama)")
    p.add_argument("--tokens", type=int, default=128, help="(a) tokens per single-stream request")
    p.add_argument("--burst", type=int, default=10, help="(b) requests of the burst; its level is the headline")
    p.add_argument("--burst-tokens", type=int, default=32, help="tokens per request of (b) and of every level")
    p.add_argument("--prompt-tokens", type=int, default=64, help="prompt length of pp and of every level")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 10, 16], help="concurrency levels")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads of every process (default: all cores)")
    p.add_argument("--quick", action="store_true", help="a short run: 2 reps, levels 1 and 10, shorter requests")
    p.add_argument("--single-only", action="store_true", help="run (a) alone: the single-stream comparison")
    p.add_argument("--skip-serve", action="store_true", help="leave out transformers serve")
    p.add_argument("--backend", default="cpu", choices=("cpu", "cuda", "metal"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    p.add_argument("--raw-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.reps, args.levels = min(args.reps, 2), [1, args.burst]
        args.tokens, args.burst_tokens, args.prompt_tokens = 32, 16, 32
    TARGET.update(backend=args.backend, dtype=args.dtype, threads=args.threads or len(os.sched_getaffinity(0)))
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

    results: dict[str, Any] = {"model": str(model), "cpu_count": os.cpu_count(), "threads": TARGET["threads"],
                               "torch": version("torch"), "transformers": version("transformers"),
                               "load_before": os.getloadavg()[0], "reps": args.reps}
    print(f"{TARGET['threads']} torch threads per process, {args.dtype} on {args.backend}, {load()}", flush=True)
    raw_child = RawChild(model)
    proc, url = start_worker(model, max_batch=max(16, args.burst, *args.levels))
    serve = None
    try:
        asyncio.run(burst(url, 1, 8, False))  # warm the HTTP path
        runs: dict[str, list[list[float]]] = {"worker": [], "generate": [], "loop": [], "worker_path": []}
        for rep in range(args.reps):
            # interleaved, the order alternating, so a change of load hits both sides alike
            if rep % 2:
                runs["worker"].append(list(worker_single(url, proc.pid, args.tokens)))
                r = raw_child.measure(args.tokens)
            else:
                r = raw_child.measure(args.tokens)
                runs["worker"].append(list(worker_single(url, proc.pid, args.tokens)))
            for arm in ("generate", "loop", "worker_path"):
                runs[arm].append(r[arm])
        med = {arm: statistics.median(x[0] for x in v) for arm, v in runs.items()}
        cpu = {arm: statistics.median(x[1] for x in v) for arm, v in runs.items()}
        results["a_raw_generate_tps"], results["a_raw_loop_tps"] = med["generate"], med["loop"]
        results["a_worker_path_tps"], results["a_worker_tps"] = med["worker_path"], med["worker"]
        results["a_runs"] = runs  # per arm and run: [tokens per wall second, tokens per CPU second]
        results["a_ratio"] = med["worker"] / med["generate"]
        results["a_ratio_vs_loop"] = med["worker"] / med["loop"]
        results["a_path_ratio"] = med["worker_path"] / med["generate"]
        results["a_cpu_ratio"] = cpu["worker"] / cpu["generate"]
        results["a_cpu_path_ratio"] = cpu["worker_path"] / cpu["generate"]
        results["a_cpu_loop_ratio"] = cpu["worker"] / cpu["loop"]
        print(f"(a) single stream: worker {med['worker']:.1f} tok/s vs raw generate {med['generate']:.1f} tok/s -> "
              f"{results['a_ratio']:.3f}x (goal >= 0.97); vs a bare greedy loop {med['loop']:.1f} tok/s -> "
              f"{results['a_ratio_vs_loop']:.3f}x; the worker's decode path in the baseline's process "
              f"{med['worker_path']:.1f} tok/s -> {results['a_path_ratio']:.3f}x of generate ({load()})", flush=True)
        print(f"    per CPU second (what load distorts least): worker {cpu['worker']:.1f} vs generate "
              f"{cpu['generate']:.1f} -> {results['a_cpu_ratio']:.3f}x, vs the loop {cpu['loop']:.1f} -> "
              f"{results['a_cpu_loop_ratio']:.3f}x, decode path in process {cpu['worker_path']:.1f} -> "
              f"{results['a_cpu_path_ratio']:.3f}x", flush=True)
        if args.single_only:
            return _finish(results, args)

        seq, conc = [], []
        for _ in range(args.reps):
            seq.append(asyncio.run(burst(url, args.burst, args.burst_tokens, False)))
            conc.append(asyncio.run(burst(url, args.burst, args.burst_tokens, True)))
        results["b_sequential_tps"] = statistics.median(seq)
        results["b_burst_tps"] = statistics.median(conc)
        results["b_ratio"] = results["b_burst_tps"] / results["b_sequential_tps"]
        print(f"(b) burst of {args.burst}: {results['b_burst_tps']:.1f} tok/s vs sequential "
              f"{results['b_sequential_tps']:.1f} tok/s -> {results['b_ratio']:.2f}x (goal >= 4x) ({load()})",
              flush=True)

        raw_child.close()  # free its memory before a third model process starts
        if not args.skip_serve:
            serve = start_serve(model)
            if serve is None:
                print("transformers serve --continuous-batching: not available or failed to start; "
                      "the levels run against our worker alone", flush=True)
        servers = [Server("worker", url, {"ignore_eos": True})]
        if serve is not None:
            servers.append(Server("serve", serve[1], {}))
        prompts = asyncio.run(fixed_prompts(url, args.prompt_tokens, max(args.levels)))
        print(f"pp{args.prompt_tokens} / tg{args.burst_tokens}, mean ± σ over {args.reps} reps:", flush=True)
        results["pp_tg"] = pp_tg(servers, prompts[0], args.prompt_tokens, args.burst_tokens, args.reps)
        print(f"levels: bursts of c requests x {args.prompt_tokens} prompt tokens x {args.burst_tokens} out, "
              f"median throughput of {args.reps} interleaved runs; TTFT/TPOT/ITL p50/p90/p99 pooled over the runs",
              flush=True)
        rows = []
        for stream in (False, True):
            rows += levels(servers, prompts, args.levels, args.burst_tokens, args.reps, stream)
        results["levels"] = rows
        headline = next((r for r in rows if r["concurrency"] == args.burst and not r["stream"]), None)
        results["c_ratio"] = headline.get("ratio") if headline else None
        if headline and results["c_ratio"] is not None:
            results["c_worker_burst_tps"] = headline["worker"]["throughput_tps"]
            results["c_serve_burst_tps"] = headline["serve"]["throughput_tps"]
            ratios = {f"{'stream' if r['stream'] else 'plain'}@{r['concurrency']}": round(r["ratio"], 3)
                      for r in rows}
            results["serve_ratios"] = ratios
            print(f"worker ÷ transformers serve: {ratios} (goal >= 1.2x at c=10, >= 1.0x elsewhere)", flush=True)
    finally:
        raw_child.close()
        stop(proc)
        if serve is not None:
            stop(serve[0])
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return _finish(results, args)


def _finish(results: dict[str, Any], args: argparse.Namespace) -> int:
    results.update(backend=args.backend, dtype=args.dtype, load_after=os.getloadavg()[0])
    print(json.dumps(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

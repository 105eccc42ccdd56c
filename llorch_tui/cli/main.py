"""`llorch`: the orchestrator CLI — every pool command remotely, jobs, doctor, trust, configuration.

    llorch pool <llorch-pool command ...> --host POOL     the pool agent's command tree, run on POOL
    llorch pool status --all                              every configured pool at once
    llorch pool doctor --host POOL                        what works there and what to fix
    llorch pool trust --host POOL [--yes] [--replace]     accept the pool's SSH host key
    llorch pool install --host POOL [--torch ..]          this llorch (+ worker, torch) on a pool, agent_command recorded
    llorch jobs submit|list|cancel                        prompts to running workers
    llorch models place ID                                where a model would run, best first, and why
    llorch models copy ID --from A --to B                 a model pool to pool, through this machine
    llorch config init|show                               the configuration file

Contract: every leaf sets `handler(args) -> int` (the exit status).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from llorch_tui import __version__
from llorch_tui.cli.config_cmd import add_config_commands
from llorch_tui.cli.fleet_models import add_models_commands
from llorch_tui.errors import LlorchError
from llorch_tui.pool.cli.runner import EXIT_ERROR, print_error, run_sync
from llorch_tui.pool.cli.tree import all_commands, build_tree
from llorch_tui.protocol import ops


def _host_args(leaf: argparse.ArgumentParser) -> None:
    leaf.add_argument("--host", metavar="POOL",
                      help="the pool: a configured pool name, or [user@]host[:port] / an ~/.ssh/config alias")
    is_status = leaf.prog.split()[-1] == "status"
    if is_status and "--all" not in leaf._option_string_actions:
        leaf.add_argument("--all", dest="all_pools", action="store_true", help="every configured pool")


def _pool_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    pool = sub.add_parser("pool", help="run pool agent commands on a pool (--host POOL)",
                          description="The llorch-pool command tree, executed on the pool named by --host.")
    psub = pool.add_subparsers(dest="pool_cmd", metavar="COMMAND", required=True)
    build_tree(psub, [s for s in all_commands() if s.op and s.remote], _host_args)

    doctor = psub.add_parser("doctor", help="check a pool: connection, agent, versions, torch backends, disk")
    doctor.add_argument("--host", metavar="POOL", required=True, help="the pool to check")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_doctor)

    from llorch_tui.cli.install_cli import add_install_command

    add_install_command(psub)

    trust = psub.add_parser("trust", help="show a pool's SSH host key fingerprint and add it to known_hosts")
    trust.add_argument("--host", metavar="POOL", required=True, help="the pool whose key to accept")
    trust.add_argument("--yes", action="store_true", help="do not ask (you compared the fingerprint already)")
    trust.add_argument("--replace", action="store_true", help="replace a different key already known for that host")
    trust.add_argument("--json", action="store_true", help="machine-readable output")
    trust.set_defaults(handler=_trust)
    pool.set_defaults(handler=_pool_spec)


def _jobs_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    jobs = sub.add_parser("jobs", help="submit prompts to running workers, list and cancel them")
    jsub = jobs.add_subparsers(dest="jobs_cmd", metavar="COMMAND", required=True)
    s = jsub.add_parser("submit", help="run a prompt on a ready worker of a model (found on any pool)")
    s.add_argument("--model", required=True, help="model id")
    s.add_argument("--prompt", required=True, help="the prompt text ('-' reads it from stdin)")
    s.add_argument("--max-tokens", type=int, help="tokens to generate (worker default: 64)")
    s.add_argument("--seed", type=int, help="sampling seed (same seed, same text)")
    s.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    s.add_argument("--ignore-eos", action="store_true", help="generate exactly --max-tokens (benchmarks, tests)")
    s.add_argument("--pool", help="only this pool")
    s.add_argument("--spawn", metavar="BACKEND", choices=["cpu", "cuda", "metal"],
                   help="no ready worker? spawn one with this backend (on --pool)")
    s.add_argument("--json", action="store_true", help="events and the job record as JSON lines")
    s.set_defaults(handler=_jobs_submit)
    ls = jsub.add_parser("list", help="jobs submitted from this machine")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=_jobs_list)
    c = jsub.add_parser("cancel", help="cancel a running job (POST /cancel to its worker)")
    c.add_argument("job", help="job id (or a unique prefix)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(handler=_jobs_cancel)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llorch", description="llorch orchestrator: pools, jobs, configuration")
    p.add_argument("--version", action="version", version=f"llorch {__version__}")
    p.add_argument("--config", help="configuration file (default: $LLORCH_CONFIG, ~/.config/llorch/config.toml, "
                                    "else built-in)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    _pool_commands(sub)
    _jobs_commands(sub)
    add_models_commands(sub)
    add_config_commands(sub)
    return p


# -- handlers ----------------------------------------------------------------------------
def _pool_spec(args: argparse.Namespace) -> int:
    from llorch_tui.cli import pools
    from llorch_tui.cli.remote import run_all, run_remote

    as_json = bool(getattr(args, "json", False))
    spec = args.spec
    try:
        config = pools.load(args.config)
        if getattr(args, "all_pools", False):
            return run_sync(lambda: run_all(spec, args, config), as_json)
        if not args.host:
            names = ", ".join(p.name for p in config.pools) or "(none)"
            raise LlorchError("bad_request", "which pool? pass --host POOL" + (" (or --all)" if spec.op is ops.POOL_STATUS else ""),
                              f"configured pools: {names}")
        pool = pools.resolve(config, args.host)
    except LlorchError as e:
        print_error(e, as_json)
        return EXIT_ERROR
    return run_sync(lambda: run_remote(spec, args, pool), as_json)


def _doctor(args: argparse.Namespace) -> int:
    from llorch_tui.cli import doctor, pools

    try:
        pool = pools.resolve(pools.load(args.config), args.host)
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR

    async def go() -> int:
        return doctor.render(pool, await doctor.run_doctor(pool), args.json)

    return run_sync(go, args.json)


def _trust(args: argparse.Namespace) -> int:
    import json

    from llorch_tui.cli import pools
    from llorch_tui.transport.ssh_trust import add_to_known_hosts, fetch_host_key

    try:
        pool = pools.resolve(pools.load(args.config), args.host)
        if pool.transport != "ssh":
            raise LlorchError("bad_request", f"pool {pool.name} is local: there is no host key to trust")
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR

    async def go() -> int:
        info = await fetch_host_key(pool)
        if not args.json:
            print(f"pool {pool.name}: {info.entry_name} offers key {info.fingerprint} ({info.key_line.split()[1]})")
        if info.status == "trusted":
            if args.json:
                print(json.dumps({"pool": pool.name, "fingerprint": info.fingerprint, "status": "trusted", "added": False}))
            else:
                print(f"already trusted in {info.known_hosts}")
            return 0
        if info.status == "changed":
            print(f"WARNING: {info.known_hosts} holds a DIFFERENT key for {info.entry_name}.", file=sys.stderr)
        if not args.yes:
            if not sys.stdin.isatty():
                raise LlorchError("bad_request", "not asking on a non-interactive terminal",
                                  "compare the fingerprint with the pool's own, then pass --yes")
            answer = await asyncio.to_thread(input, f"Add it to {info.known_hosts}? Compare with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` "
                           "on the pool. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("not added")
                return 1
        add_to_known_hosts(info, replace=args.replace)
        if args.json:
            print(json.dumps({"pool": pool.name, "fingerprint": info.fingerprint, "status": info.status,
                              "added": True, "known_hosts": info.known_hosts}))
        else:
            print(f"added to {info.known_hosts}")
        return 0

    return run_sync(go, args.json)


def _jobs_submit(args: argparse.Namespace) -> int:
    from llorch_tui.cli import jobs, pools
    from llorch_tui.cli.jobs_store import JobStore

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt

    async def go() -> int:
        job = await jobs.submit(pools.load(args.config), JobStore(), model=args.model, prompt=prompt,
                                max_tokens=args.max_tokens, seed=args.seed, stream=args.stream, pool_name=args.pool,
                                spawn=args.spawn, out=jobs.stdout_writer, err=jobs.stderr_writer, as_json=args.json,
                                ignore_eos=args.ignore_eos)
        if args.json:
            print(job.model_dump_json(), flush=True)
        else:
            rate = f", {job.tokens_per_second:.1f} tok/s" if job.tokens_per_second else ""
            print(f"job {job.id} {job.state}: {job.tokens} tokens{rate} ({job.finish_reason})", file=sys.stderr)
        return 0 if job.state == "done" else EXIT_ERROR

    return run_sync(go, args.json)


def _jobs_list(args: argparse.Namespace) -> int:
    from llorch_tui.cli import jobs
    from llorch_tui.cli.jobs_store import JobStore

    try:
        jobs.render_list(JobStore().list(), args.json)
    except LlorchError as e:
        print_error(e, args.json)
        return EXIT_ERROR
    return 0


def _jobs_cancel(args: argparse.Namespace) -> int:
    from llorch_tui.cli import jobs, pools
    from llorch_tui.cli.jobs_store import JobStore

    async def go() -> int:
        job = await jobs.cancel(pools.load(args.config), JobStore(), args.job)
        if args.json:
            print(job.model_dump_json(), flush=True)
        else:
            print(f"job {job.id}: {job.state}" + (f" ({job.error})" if job.error else ""))
        return 0

    return run_sync(go, args.json)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "spec", None) is not None and getattr(args, "handler", None) is _pool_spec:
        return _pool_spec(args)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())

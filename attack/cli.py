"""``sanspi attack``: a hostile peer against a provider, under the model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

from sanspi.cli import UsageError, clear_progress, progress

#: The agent's port for a two-host attack (conform's is agent.PORT).
AGENT_PORT = 18532
#: Attempts per profile (issue 14: at least 1,000 in CI, 10,000 long).
PROFILES = {"ci": 1000, "long": 10000}
#: Every run stops by itself after this long, finished or not.
TIME_LIMIT_S = {"ci": 1800.0, "long": 14400.0}
#: What the lab run around it may add: boot, set-up, report, teardown.
LAB_MARGIN_S = 600.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="a hostile peer on the wire: raw operations against a provider while it "
                                      "serves an honest peer under the model")
    p.add_argument("--provider", choices=("sim", "rxe"), default="sim",
                   help="sim (the software NIC's fabric, in-process) or rxe (raw pyverbs, in the lab)")
    p.add_argument("--topology", choices=("loopback", "two-host"), default="loopback",
                   help="for rxe: one device, or the hostile peer in a second lab guest")
    p.add_argument("--profile", choices=tuple(PROFILES), default="ci",
                   help=f"attempts: {', '.join(f'{k} {v}' for k, v in PROFILES.items())}")
    p.add_argument("--attempts", type=int, help="attempts (overrides the profile)")
    p.add_argument("--seed", type=int, default=0, help="the seed of every choice (default 0)")
    p.add_argument("--out", default="reports/attack", help="folder for attack.md and attack.json")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    attempts = PROFILES[args.profile] if args.attempts is None else args.attempts
    if attempts < 1:
        raise UsageError(f"--attempts takes a positive number, not {attempts}")
    if args.topology == "two-host" and args.provider != "rxe":
        raise UsageError("--topology two-host is for --provider rxe (two lab guests)")
    if args.provider == "rxe":
        in_lab = os.environ.get("SANSPI_LAB_TOPOLOGY")
        if args.topology == "two-host" and in_lab != "two-host" or \
                not in_lab and not any(Path("/sys/class/infiniband").glob("*")):
            return _through_lab(args, attempts)
        if args.topology == "two-host":
            return _two_host(args, attempts)
    return _attack(args, attempts, _factory(args.provider), observe_mrs=args.provider == "rxe")


def _through_lab(args: argparse.Namespace, attempts: int) -> int:
    """This host has no RDMA device (or two guests are asked): the same
    command inside the lab, its report written back through --rwdir."""
    from sanspi.cli import main as sanspi_main

    print("sanspi attack: running inside the lab (sanspi lab run)", file=sys.stderr)
    out = str(Path(args.out).resolve())
    # The lab's own deadline comes after the run's: a long run stops by
    # itself and writes its report (lab run's default, 1800 s, cut a long
    # run off with no report at all).
    deadline = TIME_LIMIT_S[args.profile] + LAB_MARGIN_S
    return sanspi_main(["lab", "run", "--topology", args.topology, "--rwdir", out, "--timeout", f"{deadline:.0f}", "--",
                        "sanspi", "attack", "--provider", args.provider, "--topology", args.topology,
                        "--profile", args.profile, "--attempts", str(attempts), "--seed", str(args.seed),
                        "--out", out])


def _factory(provider: str) -> Callable[[], tuple[Any, Any]]:
    """(victim, host 1) pairs: the victim and its honest peer are the
    provider's own pair; the hostile peer joins host 1."""
    from sanspi.attack.campaign import PAGES
    from sanspi.attack.host import PeerHost

    if provider == "sim":
        from sanspi.attack.peer_sim import SimHostilePeer
        from sanspi.impl.interface import Capabilities
        from sanspi.impl.sim import sim_pair

        def sim() -> tuple[Any, Any]:
            victim, honest = sim_pair(Capabilities(), PAGES)
            return victim, PeerHost(honest, SimHostilePeer(honest))

        return sim
    from sanspi.attack.peer_verbs import VerbsHostilePeer
    from sanspi.impl.verbs import VerbsProvider

    def rxe() -> tuple[Any, Any]:
        honest = VerbsProvider(pages=PAGES)
        return VerbsProvider(pages=PAGES), PeerHost(honest, VerbsHostilePeer(honest))

    return rxe


def decoder(provider: str) -> Callable[[bytes], tuple[int, int, int] | None]:
    """(rkey, address, length) of one of the provider's descriptors: its wire
    format, read from the provider (the hostile peer needs no MAC to read it)."""
    if provider == "sim":
        from sanspi.impl.sim import decode_descriptor

        def sim(raw: bytes) -> tuple[int, int, int] | None:
            fields = decode_descriptor(raw)
            return None if fields is None else (fields[2], fields[0], fields[1])

        return sim
    from sanspi.impl.verbs import DESC_BODY

    def verbs(raw: bytes) -> tuple[int, int, int] | None:
        if not isinstance(raw, bytes) or len(raw) < DESC_BODY.size:
            return None
        _, _, _, rkey, addr, length = DESC_BODY.unpack(raw[:DESC_BODY.size])
        return rkey, addr, length

    return verbs


def _two_host(args: argparse.Namespace, attempts: int) -> int:
    """Inside ``sanspi lab run --topology two-host``: guest 1 serves host 1
    (the honest peer and the hostile peer) behind conform's agent; guest 0
    runs the victim, the model and the attack."""
    from sanspi.attack import rdma
    from sanspi.attack.campaign import PAGES
    from sanspi.attack.host import PeerHost, RemotePeerHost
    from sanspi.attack.peer_verbs import VerbsHostilePeer
    from sanspi.conform import agent
    from sanspi.conform.providers import rxe_host1
    from sanspi.impl.verbs import VerbsProvider

    me = os.environ.get("SANSPI_LAB_HOST")
    local, peer = os.environ.get("SANSPI_LAB_LOCAL_ADDR"), os.environ.get("SANSPI_LAB_PEER_ADDR")
    if me not in ("0", "1") or not local or not peer:
        raise UsageError("two-host needs SANSPI_LAB_HOST, SANSPI_LAB_LOCAL_ADDR and SANSPI_LAB_PEER_ADDR "
                         "(run it through `sanspi lab run --topology two-host`)")

    def host1(pages: int) -> PeerHost:
        honest = rxe_host1(pages)
        return PeerHost(honest, VerbsHostilePeer(honest))

    try:
        if me == "1":
            print(f"attack: host 1 (the honest and the hostile peer) serves on {local}:{AGENT_PORT}", flush=True)
            return agent.serve(local, AGENT_PORT, host1)
        link = agent.connect(peer, AGENT_PORT)
    except agent.AgentError as exc:
        print(f"sanspi attack: host {me}: {exc}", file=sys.stderr)
        return 1
    try:
        there, here = link.call("hello"), agent.environment()
        hosts = {key: f"host 0 {here[key]}, host 1 {there[key]}" for key in ("kernel", "device")}
        return _attack(args, attempts, lambda: (VerbsProvider(pages=PAGES), RemotePeerHost(link, PAGES)),
                       observe_mrs=True, leaks_here=rdma.counts, hosts=hosts, link=link)
    finally:
        link.bye()


def _attack(args: argparse.Namespace, attempts: int, factory: Callable, observe_mrs: bool,
            leaks_here: Callable | None = None, hosts: dict | None = None, link: Any = None) -> int:
    from sanspi.attack import rdma
    from sanspi.attack.campaign import Attack
    from sanspi.attack.report import write

    print(f"attack: {args.provider} ({args.topology}), {attempts} attempts, seed {args.seed}", flush=True)
    attack = Attack(factory, args.provider, args.topology, decoder(args.provider), attempts, args.seed,
                    TIME_LIMIT_S[args.profile], observe_mrs, leaks_here, progress=progress)
    try:
        result = attack.run()
    except rdma.RdmaToolError as exc:
        clear_progress()
        print(f"sanspi attack: {exc}", file=sys.stderr)
        return 1
    clear_progress()
    if link is not None and link.lost:
        print(f"sanspi attack: the run stopped: {link.lost}", file=sys.stderr)
        return 1
    files = write(result, Path(args.out), {"profile": args.profile, "attempts": attempts, "seed": args.seed}, hosts)
    print("written: " + ", ".join(str(f) for f in files))
    print(files[0].read_text(), end="")  # its last line: the totals
    if result.stopped:
        print(f"sanspi attack: the run stopped: {result.stopped}", file=sys.stderr)
    return 0 if result.ok else 1

"""The sync engine: read both sides, plan, apply. Shared by the CLI and the RQ jobs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from worker.clients.bqn import BqnClient
from worker.clients.connection import Connection
from worker.clients.parallel import run_all
from worker.clients.wisphub import WispHubClient
from worker.core import phrases
from worker.core.client_overrides import is_rate_policy
from worker.core.desired import (
    GROUP_PREFIX,
    Desired,
    Entries,
    PolicyNames,
    Row,
    as_id,
    desired_state,
    group_name,
    is_own_group,
    map_client,
)
from worker.core.diff import RULES, Changes, diff_policies, plan_full
from worker.core.drift import Drift, find_drift
from worker.core.errors import ConfigError, SyncError, TransientError
from worker.core.guard import guard_deletions
from worker.core.model import Action, Footprint, Group, Kind, Operation, Policy, Skip, Subscriber
from worker.core.ownership import Claims, Settlement, footprint_after, settle
from worker.core.plans import (
    Plan,
    Speeds,
    name_collisions,
    plan_from_wisphub,
    policy_names,
    resolved,
    wanted_policies,
    with_overrides,
)
from worker.core.progress import Progress, silent
from worker.core.report import Report
from worker.core.rules import GuardLimits, MappingRules
from worker.sync.apply import DeletionCheck, apply_changes
from worker.sync.policy_cache import PolicyCache

log = logging.getLogger(__name__)
T = TypeVar("T")

# The plan catalogue to sync some client rows with (a job's reads it again when a row names a
# plan it lacks, or names one otherwise).
PlanSource = Callable[[Sequence[Row]], Sequence[Plan]]
# The clients seen claiming some addresses (see `worker.core.ownership`).
ClaimLookup = Callable[[Collection[str]], Claims]
# A client and what to remember of it.
ClientFootprint = tuple[int, Footprint | None]


class ClientRows(Protocol):
    """Where the engine reads clients: WispHub (`WispHubClient`), or WispHub as one target
    sees it (`worker.sync.targets.SelectedClients`)."""

    @property
    def settings(self) -> Connection: ...

    def list_clients(self, progress: Progress = silent) -> list[Row]: ...

    def get_client(self, id_servicio: int) -> Row | None: ...


@dataclass
class Held:
    """What the BQN holds at the keys a job looks at (`None`: nothing there)."""

    subscribers: dict[str, Subscriber | None] = field(default_factory=dict)
    groups: dict[str, Group | None] = field(default_factory=dict)
    policies: dict[str, Policy | None] = field(default_factory=dict)

    def read(
        self,
        bqn: BqnClient,
        *,
        ips: Iterable[str] = (),
        groups: Iterable[str] = (),
        policies: Iterable[str] = (),
    ) -> None:
        """Read, all at once, the subscribers, groups and policies not read yet."""
        reads = [
            *(
                (self.subscribers, ip, bqn.get_subscriber)
                for ip in sorted(set(ips) - self.subscribers.keys())
            ),
            *(
                (self.groups, name, bqn.get_group)
                for name in sorted(set(groups) - self.groups.keys())
            ),
            *(
                (self.policies, name, bqn.get_policy)
                for name in sorted(set(policies) - self.policies.keys())
            ),
        ]
        found = run_all(lambda read: read[2](read[1]), reads, bqn.concurrency)
        for (into, key, _), value in zip(reads, found, strict=True):
            into[key] = value


@dataclass(frozen=True)
class FullSync:
    """A full sync's report, the desired state it worked towards, the plans it used, what the
    BQN held before, and the clients it found alive while confirming deletions (their entries
    were kept; they should be synced again)."""

    report: Report
    desired: Desired
    plans: list[Plan]
    held: list[Subscriber] = field(default_factory=list)
    held_groups: list[Group] = field(default_factory=list)
    alive: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ClientSync:
    """A one-client sync's report and what to remember of the client.

    `current` is what a caller should remember as "last applied" for the client: where it
    claims addresses now, and where an operation failed (see `footprint_after`); `None` when it
    has nothing on the BQN any more. `row` is the client as WispHub answered (`None`: it has no
    such client). `held` is what the BQN held at the client's addresses and group, and the
    policies they use, before anything was written.
    """

    report: Report
    current: Footprint | None
    row: Row | None
    held: Held


def read_plans(wisphub: WispHubClient, overrides: Mapping[str, Speeds]) -> list[Plan]:
    """The plan catalogue: every plan with its speeds from WispHub or the override file."""
    plans = [
        plan_from_wisphub(
            summary, wisphub.plan_detail(int(summary["id"]), str(summary.get("tipo") or ""))
        )
        for summary in wisphub.list_plans()
        if as_id(summary.get("id")) is not None
    ]
    return with_overrides(plans, overrides)


@dataclass(frozen=True)
class MappedPass:
    """A complete WispHub pass of one target's clients as the sync reads it: the rows, the
    plans named as the rows show them, and the desired state. Targets that take the same
    clients (the two BQNs of an HA pair) share one."""

    rows: list[Row]
    plans: list[Plan]
    desired: Desired


def map_pass(rows: list[Row], rules: MappingRules, plans: Sequence[Plan]) -> MappedPass:
    """What the BQN should hold for the clients of `rows`, a complete pass."""
    named = resolved(plans, rows, rules)
    return MappedPass(rows, named, desired_state(rows, rules, policy_names(named)))


def full_sync(
    mapped: MappedPass,
    wisphub: ClientRows,
    bqn: BqnClient,
    *,
    rules: MappingRules,
    guard: GuardLimits,
    last_pass: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress = silent,
    book: AddressBook | None = None,
    taken: Callable[[int], bool] | None = None,
) -> FullSync:
    """Bring the whole BQN in line with a complete WispHub pass, `mapped`.

    The pass must be complete (`WispHubClient.list_clients` raises `IncompletePass` before
    anything is written); the BQN is read once and the plan applied, policies first. The
    deletion guard may hold deletions back (see `worker.core.guard`); `last_pass` is the size of
    the last complete pass, when the caller knows it. With a `book`, every client last seen
    claiming an entry the guard lets go is read once more from `wisphub`, and the entry stays
    if one still claims it (a row the paging skipped, a client that moved there since the
    pass); each deletion is then sent holding its address, and held back if a job gave the
    address to a client meanwhile. The writes for a client `taken` says a job applied since
    the pass was read are left to it. `progress` hears how the operations advance.
    """
    rows, plans, desired = mapped.rows, mapped.plans, mapped.desired
    subscribers, groups = bqn.list_subscribers(), bqn.list_groups()
    changes = plan_full(
        desired, subscribers, bqn.list_policies(), wanted_policies(plans, rules), groups
    )
    managed = sum(sub.assigned_by != RULES for sub in subscribers)
    managed += sum(is_own_group(group.name) for group in groups)
    changes, tripped = guard_deletions(
        changes, managed=managed, last_pass=last_pass, limits=guard, force=force
    )
    if tripped:
        log.warning("deletion guard: %s", tripped)
    alive: list[int] = []
    check = None
    if book is not None:
        changes, alive, confirmed = confirm_deletions(changes, wisphub, rules, book.claimants)
        check = deletion_check(book, confirmed)
    log.info("full sync: %d operations for %d clients", len(changes.operations), len(rows))
    report = apply_changes(
        changes, bqn, dry_run=dry_run, progress=progress, check_deletion=check, taken=taken
    )
    report.guard = tripped
    report.plans_without_speeds = plans_without_speeds(plans)
    report.notes += name_collisions(plans)
    report.notes += [phrases.STILL_CLAIMS.format(key=key) for key in alive]
    return FullSync(report, desired, list(plans), subscribers, groups, alive)


def confirm_deletions(
    changes: Changes, wisphub: ClientRows, rules: MappingRules, claimants: ClaimLookup
) -> tuple[Changes, list[int], Claims]:
    """`changes` without the deletions a single read shows to be wrong: each client that last
    claimed a deleted address or group is read again (the pass is older than what jobs did
    meanwhile, and may have missed a row), and its entries stay if it still claims them (or
    cannot be read). Returns the clients found claiming them, and the claimants read for the
    addresses still to be deleted."""
    deletions = [op for op in changes.operations if op.action is Action.DELETE]
    claims = claimants([op.key for op in deletions if op.kind is Kind.SUBSCRIBER])
    suspects: list[tuple[Operation, set[int]]] = []
    for op in deletions:
        if op.kind is Kind.GROUP:
            owners = {int(op.key.removeprefix(GROUP_PREFIX))}
        else:
            owners = set(claims.get(op.key, ()))
        if owners:
            suspects.append((op, owners))
    wanted = sorted({key for _, keys in suspects for key in keys})
    if not wanted:
        return changes, [], claims
    reads = run_all(_read_or_fault(wisphub), wanted, wisphub.settings.concurrency)
    found = dict(zip(wanted, reads, strict=True))
    kept = [
        (op, keys)
        for op, keys in suspects
        if any(_still_holds(found[key], op, rules) for key in keys)
    ]
    alive = sorted({key for _, keys in kept for key in keys if isinstance(found[key], dict)})
    for op, _ in kept:
        log.warning("kept %s: a client missing from the pass still claims it", op.describe())
    dropped = {id(op) for op, _ in kept}
    operations = tuple(op for op in changes.operations if id(op) not in dropped)
    return replace(changes, operations=operations), alive, claims


def deletion_check(book: AddressBook, confirmed: Claims) -> DeletionCheck:
    """Send a subscriber deletion holding its address, and only if nobody but the claimants
    read (and found elsewhere) when it was confirmed claims it now; on a busy address, keep
    the entry for the next pass."""

    @contextmanager
    def check(op: Operation) -> Iterator[bool]:
        if op.kind is not Kind.SUBSCRIBER:
            yield True
            return
        with ExitStack() as stack:
            try:
                stack.enter_context(book.hold([op.key]))
            except TransientError:
                yield False
                return
            now = set(book.claimants([op.key]).get(op.key, ()))
            yield now <= set(confirmed.get(op.key, ()))

    return check


def read_clients(
    wisphub: ClientRows, ids: Sequence[int]
) -> tuple[dict[int, Row | None], dict[int, SyncError]]:
    """Each client's row (`None`: no such client), and the error of each client that could not
    be read, `WISPHUB_CONCURRENCY` reads at a time; bad credentials stop everything."""
    found: dict[int, Row | None] = {}
    unread: dict[int, SyncError] = {}
    reads = run_all(_read_or_fault(wisphub), ids, wisphub.settings.concurrency)
    for key, read in zip(ids, reads, strict=True):
        if isinstance(read, ConfigError):
            raise read
        if isinstance(read, SyncError):
            unread[key] = read
        else:
            found[key] = read
    return found, unread


def _read_or_fault(wisphub: ClientRows) -> Callable[[int], Row | SyncError | None]:
    """A client read that returns its failure instead of raising it."""

    def read(id_servicio: int) -> Row | SyncError | None:
        try:
            return wisphub.get_client(id_servicio)
        except SyncError as exc:
            return exc

    return read


def _still_holds(found: Row | SyncError | None, op: Operation, rules: MappingRules) -> bool:
    """Whether a client read again still claims the key of a deletion (a failed read counts
    as yes: an entry is never deleted on a doubt)."""
    if isinstance(found, SyncError):
        return True
    if found is None:
        return False
    mapped = map_client(found, rules)
    if isinstance(mapped, Skip):
        return op.key in mapped.kept
    if not isinstance(mapped, Entries):
        return False
    if op.kind is Kind.GROUP:
        return mapped.group is not None and mapped.group.name == op.key
    return any(sub.ip == op.key for sub in mapped.subscribers)


def sync_policies(
    bqn: BqnClient, rules: MappingRules, plans: Sequence[Plan], *, dry_run: bool = False
) -> Report:
    """Put every plan's rate policy (and the block policy) in place on the BQN."""
    plans = resolved(plans, (), rules)
    actual = bqn.list_policies()
    operations = tuple(diff_policies(wanted_policies(plans, rules), actual))
    report = apply_changes(Changes(operations, unchanged=0), bqn, dry_run=dry_run)
    report.plans_without_speeds = plans_without_speeds(plans)
    report.notes += name_collisions(plans)
    return report


def drift(bqn: BqnClient, rules: MappingRules, plans: Sequence[Plan], rows: Sequence[Row]) -> Drift:
    """Where the BQN differs from a complete pass `rows` (its three lists read at once)."""
    plans = resolved(plans, rows, rules)
    desired = desired_state(rows, rules, policy_names(plans))
    subscribers, groups, policies = run_all(
        lambda read: read(), [bqn.list_subscribers, bqn.list_groups, bqn.list_policies], 3
    )
    return find_drift(desired, subscribers, groups, policies, wanted_policies(plans, rules))


def correct_policies(bqn: BqnClient, operations: Sequence[Operation]) -> Report:
    """Apply policy corrections the poller found."""
    return apply_changes(Changes(tuple(operations)), bqn)


def plans_without_speeds(plans: Sequence[Plan]) -> list[dict[str, str]]:
    """The plans left for the operator, with why, for reports."""
    return [
        {"plan": p.nombre, "policy": p.policy_name, "reason": p.problem or phrases.NO_SPEEDS}
        for p in plans
        if p.speeds is None
    ]


class Lease(Protocol):
    """Address locks held by one job (see `worker.queue.address_book.AddressLease`)."""

    def widen(self, ips: Collection[str]) -> bool: ...


class AddressBook(Protocol):
    """Where jobs keep who claims each address (see `worker.core.ownership`): `hold` keeps other
    jobs off some addresses while one decides and writes there, `claimants` says whom to read
    again, `record` keeps what was settled (and, for a client job, the clients' footprints)."""

    def hold(self, ips: Collection[str]) -> AbstractContextManager[Lease]: ...

    def claimants(self, ips: Collection[str]) -> Claims: ...

    def record(self, settlement: Settlement, footprints: Sequence[ClientFootprint]) -> None: ...


class Unrecorded:
    """The book of a one-shot run (the CLI, a dry run): no lock, nobody remembered."""

    def hold(self, ips: Collection[str]) -> AbstractContextManager[Lease]:
        return nullcontext(self)

    def widen(self, ips: Collection[str]) -> bool:
        return True

    def claimants(self, ips: Collection[str]) -> Claims:
        return {}

    def record(self, settlement: Settlement, footprints: Sequence[ClientFootprint]) -> None:
        return None


@dataclass(frozen=True)
class ClientsSync:
    """A sync of several clients at once: the whole report, each client's row as read (`None`:
    WispHub has no such client) and what to remember of it, the clients whose row could not
    be read (nothing was done for them; the error says why), and what the BQN held at their
    keys before (`ClientSync.held`)."""

    report: Report
    rows: dict[int, Row | None]
    current: dict[int, Footprint | None]
    unread: dict[int, SyncError]
    held: Held = field(default_factory=Held)


def sync_client(
    id_servicio: int,
    wisphub: ClientRows,
    bqn: BqnClient,
    rules: MappingRules,
    catalogue: PlanSource,
    *,
    previous: Footprint | None = None,
    book: AddressBook | None = None,
    policies: PolicyCache | None = None,
    dry_run: bool = False,
) -> ClientSync:
    """Bring one client in line (`sync_clients` for one): a failed WispHub read raises."""
    found = sync_clients(
        [id_servicio],
        wisphub,
        bqn,
        rules,
        catalogue,
        previous={id_servicio: previous},
        book=book,
        policies=policies,
        dry_run=dry_run,
    )
    if id_servicio in found.unread:
        raise found.unread[id_servicio]
    return ClientSync(found.report, found.current[id_servicio], found.rows[id_servicio], found.held)


def no_such_client(row: Row | None, reports: Iterable[Report]) -> bool:
    """Whether a one-client sync (`reports`: its report on each target) found the client
    nowhere: WispHub has no such client and no BQN holds anything of it to remove."""
    return row is None and not any(report.planned for report in reports)


def sync_clients(
    ids: Sequence[int],
    wisphub: ClientRows,
    bqn: BqnClient,
    rules: MappingRules,
    catalogue: PlanSource,
    *,
    previous: Mapping[int, Footprint | None],
    rows: Mapping[int, Row | None] | None = None,
    book: AddressBook | None = None,
    policies: PolicyCache | None = None,
    dry_run: bool = False,
) -> ClientsSync:
    """Bring some clients in line together: read each from WispHub (unless its `rows` were
    read just now, by a complete pass or for another target; `None`: no such client) and
    settle the addresses each has or last had (`previous`), and its group, in one plan
    applied `BQN_CONCURRENCY` writes at a time, policies first.

    The addresses are held (`book.hold`) while the clients that claim them are read again
    and the BQN is read and written there, so two jobs never decide one address at once; who
    gets an address follows `worker.core.ownership`. The addresses last had are held first, so
    that the clients and what the BQN holds there are read at once; the hold widens to the
    addresses the clients have now. With a `policies` cache, a policy seen or written lately is
    not read again. A client whose read fails is left out (`unread`); a credentials error
    stops everything.
    """
    book = book or Unrecorded()
    given = dict(rows or {})
    last_ips, last_groups = _keys_of_all(ids, {}, previous, rules)
    held = Held()
    with (Unrecorded() if dry_run else book).hold(last_ips) as lease:
        wanted = [key for key in ids if key not in given]
        (read, unread), _ = run_all(
            lambda task: task(),
            [
                lambda: read_clients(wisphub, wanted),
                lambda: held.read(bqn, ips=last_ips, groups=last_groups),
            ],
            2,
        )
        found: dict[int, Row | None] = {**given, **read}
        ips, groups = _keys_of_all([key for key in ids if key in found], found, previous, rules)
        if not lease.widen(ips):
            held = Held()  # the addresses were let go meanwhile: read them again
        settlement, report = _settle(
            ips,
            found,
            held,
            wisphub=wisphub,
            bqn=bqn,
            rules=rules,
            catalogue=catalogue,
            book=book,
            groups=groups,
            policies=policies,
            dry_run=dry_run,
        )
        if dry_run:
            kept = {key: previous.get(key) for key in found}
            return ClientsSync(report, found, kept, unread, held)
        current = {
            key: footprint_after(key, previous.get(key), settlement, report) for key in found
        }
        book.record(settlement, list(current.items()))
    return ClientsSync(report, found, current, unread, held)


def sync_addresses(
    ips: Collection[str],
    wisphub: ClientRows,
    bqn: BqnClient,
    rules: MappingRules,
    catalogue: PlanSource,
    *,
    book: AddressBook,
    policies: PolicyCache | None = None,
) -> Report:
    """Settle some addresses on their own (the poller found the BQN holding them for no
    client of its pass): their last claimants are read again, and an address none of them
    claims any more is deleted."""
    with book.hold(ips):
        settlement, report = _settle(
            sorted(ips),
            {},
            Held(),
            wisphub=wisphub,
            bqn=bqn,
            rules=rules,
            catalogue=catalogue,
            book=book,
            policies=policies,
        )
        book.record(settlement, [])
    return report


def _settle(
    ips: Sequence[str],
    known: dict[int, Row | None],
    held: Held,
    *,
    wisphub: ClientRows,
    bqn: BqnClient,
    rules: MappingRules,
    catalogue: PlanSource,
    book: AddressBook,
    groups: Collection[str] = (),
    policies: PolicyCache | None = None,
    dry_run: bool = False,
) -> tuple[Settlement, Report]:
    """Read again every client claiming `ips` (besides the `known` rows), read what the BQN
    holds there (what `held` lacks), and apply what brings them in line."""
    claims = book.claimants(ips)
    others = sorted({key for ids in claims.values() for key in ids} - known.keys())
    reread = run_all(
        lambda read: read(),
        [
            lambda: run_all(wisphub.get_client, others, wisphub.settings.concurrency),
            lambda: held.read(bqn, ips=ips, groups=groups),
        ],
        2,
    )[0]
    rows = _present([*known.values(), *reread])
    plans = resolved(catalogue(rows), rows, rules)
    names = policy_names(plans)
    used = _policies_of(rows, rules, names)
    # the suspended clients' policy is always read: deleted by hand, it would come back as an
    # "undefined" placeholder, unlimited, when a subscriber names it (issue 20, item 5); a rate
    # override's, its client's alone, too: a new rate must not be hidden by the old one
    cached = {
        name: policy
        for name in used - {rules.suspended_policy}
        if policies and not is_rate_policy(name) and (policy := policies.get(name))
    }
    held.read(bqn, policies=used - cached.keys())
    settlement = settle(
        rows,
        ips,
        _present(held.subscribers.values()),
        rules,
        names=names,
        groups=groups,
        held_groups=_present(held.groups.values()),
        wanted_policies=wanted_policies(plans, rules),
        actual_policies=[*_present(held.policies.values()), *cached.values()],
    )
    report = apply_changes(settlement.changes, bqn, dry_run=dry_run)
    report.notes += name_collisions(p for p in plans if p.policy_name in used)
    if policies is not None and not dry_run:
        _remember_policies(policies, held.policies.values(), settlement.changes, report)
    return settlement, report


def _keys_of(
    id_servicio: int, row: Row | None, previous: Footprint | None, rules: MappingRules
) -> tuple[list[str], set[str]]:
    """The addresses and groups a client job settles: those the client's row claims (to have,
    or to be left as they are because its state could not be read), and those it last had.
    With no footprint (never applied, or forgotten), the group it could have is looked at too."""
    ips = set(previous.ips) if previous else set()
    groups = {previous.group} if previous and previous.group else set()
    mapped = map_client(row, rules) if row is not None else None
    if isinstance(mapped, Entries):
        ips |= {sub.ip for sub in mapped.subscribers}
        groups |= {mapped.group.name} if mapped.group else set()
    elif isinstance(mapped, Skip):
        ips |= {ip for ip in mapped.kept if "/" not in ip}
    if previous is None and rules.multi_ip_mode == "group":
        groups.add(group_name(id_servicio))
    return sorted(ips), groups


def _keys_of_all(
    ids: Iterable[int],
    rows: Mapping[int, Row | None],
    previous: Mapping[int, Footprint | None],
    rules: MappingRules,
) -> tuple[list[str], set[str]]:
    """`_keys_of` for several clients at once."""
    ips: set[str] = set()
    groups: set[str] = set()
    for key in ids:
        more_ips, more_groups = _keys_of(key, rows.get(key), previous.get(key), rules)
        ips.update(more_ips)
        groups |= more_groups
    return sorted(ips), groups


def _policies_of(rows: Iterable[Row], rules: MappingRules, names: PolicyNames) -> set[str]:
    """The policies the rows' entries use."""
    used = set()
    for row in rows:
        mapped = map_client(row, rules, names)
        if isinstance(mapped, Entries):
            used |= {sub.policy_rate for sub in mapped.subscribers}
            used |= {mapped.group.policy_rate} if mapped.group else set()
    return used


def _remember_policies(
    cache: PolicyCache, read: Iterable[Policy | None], changes: Changes, report: Report
) -> None:
    """Keep the policies read, and those written (as written), for the next jobs."""
    for policy in _present(read):
        cache.put(policy)
    failed = {failure.operation.key for failure in report.failures}
    for op in changes.operations:
        if op.kind is Kind.POLICY and op.key not in failed:
            cache.put(Policy(op.key, dict(op.fields)))


def _present(items: Iterable[T | None]) -> list[T]:
    return [item for item in items if item is not None]

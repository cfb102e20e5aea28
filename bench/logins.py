"""How many password verifications (the cost of a login) a core sustains.

Runs Argon2id verifications through the service's own hasher and settings, first one at
a time, then one per core at once, and reports both rates and their ratio, so a
deployment can size its login capacity in cores. Set PASSWORD_HASH_* to measure other
parameters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from promptstack.core.security import PasswordHasher
from promptstack.core.settings import Settings

PASSWORD = "a correct horse battery staple"  # noqa: S105 (a sample to verify)


async def _rate(hasher: PasswordHasher, hashed: str, concurrency: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds

    async def worker() -> int:
        done = 0
        while time.perf_counter() < deadline:
            valid, _ = await hasher.verify(PASSWORD, hashed)
            assert valid
            done += 1
        return done

    started = time.perf_counter()
    total = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
    return total / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = parser.parse_args()
    settings = Settings()
    hasher = PasswordHasher(settings)
    hashed = await hasher.hash(PASSWORD)
    cores = os.cpu_count() or 1
    one = await _rate(hasher, hashed, 1, args.seconds)
    every = await _rate(hasher, hashed, cores, args.seconds)
    print(
        f"Argon2id t={settings.password_hash_time_cost} m={settings.password_hash_memory_cost}"
        f" KiB p={settings.password_hash_parallelism}"
    )
    print(f"one at a time:     {one:6.1f} verifications/s ({1000 / one:.0f} ms each)")
    print(f"{cores} at once:         {every:6.1f} verifications/s")
    print(f"per core:          {every / cores:6.1f} logins/s")
    print(f"ratio, {cores} at once / one at a time: {every / one:.2f}")


if __name__ == "__main__":
    asyncio.run(main())

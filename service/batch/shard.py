"""The split of the work list across ``n`` workers (the pods of a Kubernetes Indexed Job).

A path belongs to shard ``hash(path) mod n``, with a fixed hash (BLAKE2b of the relative POSIX
path), so every pod computes the same split with no coordination, and adding files to SOURCE only
adds work to the shards those files hash to: nothing already scored moves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need count >= 1 and 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` -> Shard(i, n)."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r} is not of the form i/n (e.g. 0/4)") from None
        return cls(index, count)

    @property
    def label(self) -> str:
        """Used in chunk file names: ``00003of00008``."""
        return f"{self.index:05d}of{self.count:05d}"

    def owns(self, rel: str) -> bool:
        return shard_of(rel, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(rel: str, count: int) -> int:
    # a name that is not UTF-8 arrives with surrogate escapes (os.fsdecode): hash its real bytes
    digest = hashlib.blake2b(rel.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count

"""The verifiable lottery: commitment, draw order, reroll and verification (SPEC.md section 5).

This module is the contract that members and outside tools recompute, so it is
pure (no storage, no clock, no chat) and follows the specification exactly:

- seed ``S``: 32 bytes from a CSPRNG, revealed as lowercase hex;
- commitment ``C = sha256(hex(S))``: SHA-256 of the ASCII lowercase hex text
  of ``S`` (not of the raw bytes), as lowercase hex;
- key of entrant ``x``: ``k(x) = hmac_sha256(key=S_bytes, msg=utf8(x))`` as
  lowercase hex; entrants sorted by ``k`` ascending form the published order,
  and the first ``winners`` of that order win, in that order;
- entrants digest ``D = sha256("\\n".join(sorted entrant ids))`` (UTF-8), with
  ids sorted by Unicode code point (which is also UTF-8 byte order).

Entrant ids are opaque strings (wxids), compared exactly: no case folding, no
Unicode normalization. An id may not be empty or contain a line break, because
the digest and the entrants file are one id per line. Duplicates are dropped.
Two different ids with the same HMAC key would need a SHA-256 collision; the
order still breaks such a tie by id so that it is deterministic.

``verify_cli`` is the offline ``qunbot lottery verify`` command.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = [
    "SEED_BYTES",
    "DrawResult",
    "Verification",
    "commitment",
    "draw",
    "draw_order",
    "entrant_key",
    "entrants_digest",
    "new_seed",
    "reroll",
    "verify",
    "verify_cli",
]

SEED_BYTES = 32


# --------------------------------------------------------------------------- primitives


def new_seed() -> bytes:
    """A fresh secret seed: 32 bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, bytes | bytearray):
        raise TypeError(f"seed must be bytes, not {type(seed).__name__}")
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    return bytes(seed)


def _check_id(entrant_id: str) -> str:
    if not isinstance(entrant_id, str):
        raise TypeError(f"entrant id must be str, not {type(entrant_id).__name__}")
    if not entrant_id:
        raise ValueError("entrant id must not be empty")
    if "\n" in entrant_id or "\r" in entrant_id:
        raise ValueError(f"entrant id must not contain a line break: {entrant_id!r}")
    return entrant_id


def _unique_ids(entrant_ids: Iterable[str]) -> list[str]:
    """Validated ids, duplicates dropped, first occurrence kept."""
    if isinstance(entrant_ids, str | bytes):
        # A lone string is an iterable of characters: certainly a caller's mistake.
        raise TypeError("entrant_ids must be a collection of ids, not a single string")
    return list(dict.fromkeys(_check_id(x) for x in entrant_ids))


def commitment(seed: bytes) -> str:
    """``sha256(hex(S))``: SHA-256 of the seed's lowercase hex text, as lowercase hex."""
    return hashlib.sha256(_check_seed(seed).hex().encode("ascii")).hexdigest()


def entrant_key(seed: bytes, entrant_id: str) -> str:
    """``k(x) = hmac_sha256(key=S_bytes, msg=utf8(x))`` as lowercase hex."""
    msg = _check_id(entrant_id).encode("utf-8")
    return hmac.new(_check_seed(seed), msg, hashlib.sha256).hexdigest()


def draw_order(seed: bytes, entrant_ids: Iterable[str]) -> list[str]:
    """Every (distinct) entrant, sorted by key ascending: the published order."""
    seed = _check_seed(seed)
    ids = _unique_ids(entrant_ids)
    return sorted(ids, key=lambda x: (entrant_key(seed, x), x))


def entrants_digest(entrant_ids: Iterable[str]) -> str:
    """``sha256("\\n".join(sorted ids))`` as lowercase hex (ids deduplicated, UTF-8)."""
    ids = sorted(_unique_ids(entrant_ids))
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- draw and reroll


@dataclass(frozen=True)
class DrawResult:
    winners: tuple[str, ...]
    order: tuple[str, ...]
    entrants_digest: str
    seed_hex: str
    commitment: str

    def export(self) -> dict[str, object]:
        """The published values, in the JSON shape ``qunbot lottery verify --entrants`` reads."""
        return {
            "commitment": self.commitment,
            "seed": self.seed_hex,
            "entrants": sorted(self.order),
            "winners": list(self.winners),
            "winner_count": len(self.winners),
            "entrants_digest": self.entrants_digest,
        }


def draw(seed: bytes, entrant_ids: Iterable[str], winners: int) -> DrawResult:
    """Draw ``winners`` winners (all entrants if there are fewer)."""
    if isinstance(winners, bool) or not isinstance(winners, int):
        raise TypeError("winners must be an int")
    if winners < 1:
        raise ValueError(f"winners must be at least 1, got {winners}")
    seed = _check_seed(seed)
    ids = _unique_ids(entrant_ids)
    order = tuple(draw_order(seed, ids))
    return DrawResult(
        winners=order[:winners],
        order=order,
        entrants_digest=entrants_digest(ids),
        seed_hex=seed.hex(),
        commitment=commitment(seed),
    )


def reroll(
    seed: bytes,
    entrant_ids: Iterable[str],
    current_winners: Sequence[str],
    unreachable: str,
) -> str | None:
    """Who replaces ``unreachable``: the next entrant in the published order after every pick.

    ``current_winners`` are the picks so far: the winners standing now (it may
    also include winners already replaced; either way the latest pick is the
    furthest one in the order). Because picks only ever move forward through
    the order, the replacement is never an earlier winner, and anyone can check
    it against the revealed seed. Returns None when nobody is left.
    """
    if isinstance(current_winners, str):
        raise TypeError("current_winners must be a sequence of ids, not a single string")
    order = draw_order(seed, entrant_ids)
    position = {x: i for i, x in enumerate(order)}
    picks = [_check_id(w) for w in current_winners]
    if len(set(picks)) != len(picks):
        raise ValueError("current_winners contains duplicates")
    strangers = [w for w in picks if w not in position]
    if strangers:
        raise ValueError(f"not entrants of this draw: {', '.join(strangers)}")
    if unreachable not in picks:
        raise ValueError(f"{unreachable!r} is not a current winner")
    after = max(position[w] for w in picks) + 1
    return order[after] if after < len(order) else None


# --------------------------------------------------------------------------- verification

# verify() takes keyword arguments named like these functions; it calls them by these names.
_commitment_of = commitment
_digest_of = entrants_digest


@dataclass(frozen=True)
class Verification:
    ok: bool
    checks: list[tuple[str, bool, str]]  # (name, passed, detail)

    def lines(self) -> list[str]:
        """One line per check, then ``OK`` or ``FAILED``."""
        out = [
            f"[{'PASS' if passed else 'FAIL'}] {name}: {detail}"
            for name, passed, detail in self.checks
        ]
        out.append("OK" if self.ok else "FAILED")
        return out


def _short(digest: str) -> str:
    return digest[:16] + "…" if len(digest) > 16 else digest


def _norm_hex(value: str) -> str:
    return value.strip().lower()


def verify(
    *,
    commitment: str,
    seed_hex: str,
    entrant_ids: Sequence[str],
    winners: Sequence[str],
    winner_count: int | None = None,
    entrants_digest: str | None = None,
) -> Verification:
    """Check a published draw; every check is reported, passed or not.

    Checks: ``seed`` (32 bytes of hex), ``commitment`` (sha256 of the seed's
    lowercase hex), ``entrants_digest`` (only when a digest is given),
    ``winner_count`` (as many winners as ``min(N, entrants)``, N being
    ``winner_count`` or the number of published winners) and ``winners`` (the
    recomputed first N equal the published winners, in order).
    """
    checks: list[tuple[str, bool, str]] = []

    # seed
    seed: bytes | None = None
    try:
        raw = bytes.fromhex(seed_hex.strip())
    except ValueError:
        checks.append(("seed", False, "not hex / 不是十六进制"))
    else:
        if len(raw) == SEED_BYTES:
            seed = raw
            checks.append(("seed", True, f"{SEED_BYTES}-byte seed / 种子格式正确"))
        else:
            checks.append(
                ("seed", False, f"{len(raw)} bytes, expected {SEED_BYTES} / 种子长度错误")
            )

    # commitment
    if seed is None:
        checks.append(("commitment", False, "not checked: seed unreadable / 未检查"))
    else:
        expected = _commitment_of(seed)
        if expected == _norm_hex(commitment):
            checks.append(("commitment", True, f"sha256(seed hex) = {_short(expected)} / 承诺一致"))
        else:
            checks.append(
                (
                    "commitment",
                    False,
                    f"sha256(seed hex) = {_short(expected)}, published "
                    f"{_short(_norm_hex(commitment))} / 承诺不符",
                )
            )

    # entrants
    try:
        ids = _unique_ids(entrant_ids)
    except (TypeError, ValueError) as exc:
        checks.append(("entrants", False, f"{exc} / 名单无效"))
        return Verification(ok=False, checks=checks)
    dupes = len(entrant_ids) - len(ids)
    dupe_note = f" ({dupes} duplicate(s) ignored)" if dupes else ""

    if entrants_digest is not None:
        digest = _digest_of(ids)
        if digest == _norm_hex(entrants_digest):
            checks.append(
                (
                    "entrants_digest",
                    True,
                    f"{len(ids)} entrants{dupe_note}, digest {_short(digest)} / 名单一致",
                )
            )
        else:
            checks.append(
                (
                    "entrants_digest",
                    False,
                    f"{len(ids)} entrants{dupe_note} give digest {_short(digest)}, published "
                    f"{_short(_norm_hex(entrants_digest))} / 名单不符",
                )
            )

    # winner count
    published = list(winners)
    n = winner_count if winner_count is not None else len(published)
    expected_count = min(n, len(ids))
    if n < 1:
        checks.append(("winner_count", False, f"winner count {n} must be at least 1 / 人数错误"))
    elif len(published) == expected_count:
        checks.append(
            (
                "winner_count",
                True,
                f"{len(published)} winner(s) of {len(ids)} entrants{dupe_note} / 人数正确",
            )
        )
    else:
        checks.append(
            (
                "winner_count",
                False,
                f"{len(published)} winner(s) published, expected {expected_count} "
                f"(count {n}, {len(ids)} entrants) / 人数不符",
            )
        )

    # winners
    if seed is None:
        checks.append(("winners", False, "not checked: seed unreadable / 未检查"))
    else:
        recomputed = draw_order(seed, ids)[: max(n, 0)]
        checks.append(("winners", *_compare_winners(recomputed, published, set(ids))))

    return Verification(ok=all(passed for _, passed, _ in checks), checks=checks)


def _compare_winners(
    recomputed: list[str], published: list[str], entrants: set[str]
) -> tuple[bool, str]:
    if recomputed == published:
        return True, f"recomputed winners match, in order: {', '.join(published)} / 中奖者一致"
    expected = ", ".join(recomputed) or "(none)"
    strangers = [w for w in published if w not in entrants]
    if strangers:
        why = f"not entrants: {', '.join(strangers)}"
    elif sorted(recomputed) == sorted(published):
        why = "same winners, wrong order / 顺序不符"
    else:
        at = next(
            (i for i, (a, b) in enumerate(zip(recomputed, published, strict=False)) if a != b),
            min(len(recomputed), len(published)),
        )
        why = f"first difference at place {at + 1}"
    return False, f"{why}; recomputed: {expected} / 中奖者不符"


# --------------------------------------------------------------------------- offline command


class _UsageError(Exception):
    pass


def _parse_winners(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


def _read_entrants_file(path: str) -> tuple[list[str], dict[str, object]]:
    """Entrant ids and, for a JSON export, the whole document."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read {path}: {exc}") from exc
    if not text.lstrip().startswith("{"):
        # One id per line; blank lines and surrounding whitespace are ignored.
        return [line.strip() for line in text.split("\n") if line.strip()], {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UsageError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _UsageError(f"{path}: expected a JSON object")
    entrants = doc.get("entrants")
    if not isinstance(entrants, list) or not all(isinstance(x, str) for x in entrants):
        raise _UsageError(f"{path}: 'entrants' must be a list of ids")
    return list(entrants), doc


def _from_doc(doc: dict[str, object], key: str, path: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if key == "winners" and isinstance(value, list):
        if not all(isinstance(w, str) for w in value):
            raise _UsageError(f"{path}: 'winners' must be a list of ids")
        return ",".join(value)
    if key == "winner_count" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _UsageError(f"{path}: '{key}' has the wrong type")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="qunbot lottery verify",
        description=(
            "Check a lottery draw offline from its published values (SPEC section 5). "
            "Exit status: 0 correct, 1 not correct, 2 bad usage."
        ),
    )
    p.add_argument("--commitment", help="commitment C published when the lottery opened")
    p.add_argument("--seed", help="seed S revealed at the draw, in hex")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--entrants",
        metavar="FILE",
        help="entrant ids, one per line, or the bot's JSON export "
        "(keys commitment, seed, entrants, winners; optional winner_count, entrants_digest); "
        "command-line values take precedence over the file's",
    )
    src.add_argument("--entrant", metavar="ID", action="append", help="an entrant id (repeat)")
    p.add_argument("--winners", metavar="W1,W2", help="published winners, in order")
    p.add_argument("--count", type=int, metavar="N", help="number of winners the lottery had")
    p.add_argument("--digest", metavar="D", help="published entrants digest")
    return p


def verify_cli(argv: list[str], *, out: TextIO | None = None) -> int:
    """``qunbot lottery verify ...``: print each check and OK/FAILED; exit 0, 1, or 2 for usage."""
    stdout = out if out is not None else sys.stdout
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors (2) and --help (0) this way
        return exc.code if isinstance(exc.code, int) else 2

    try:
        doc: dict[str, object] = {}
        path = ""
        if args.entrants is not None:
            path = str(args.entrants)
            entrants, doc = _read_entrants_file(path)
        else:
            entrants = [str(x) for x in args.entrant]

        def pick(cli: str | None, key: str) -> str | None:
            return cli if cli is not None else _from_doc(doc, key, path)

        commitment_ = pick(args.commitment, "commitment")
        seed_hex = pick(args.seed, "seed")
        winners_text = pick(args.winners, "winners")
        digest = pick(args.digest, "entrants_digest")
        count_text = (
            str(args.count) if args.count is not None else _from_doc(doc, "winner_count", path)
        )
        missing = [
            opt
            for opt, value in (
                ("--commitment", commitment_),
                ("--seed", seed_hex),
                ("--winners", winners_text),
            )
            if value is None
        ]
        if missing:
            raise _UsageError(f"missing {', '.join(missing)} (not given and not in a JSON file)")
        assert commitment_ is not None and seed_hex is not None and winners_text is not None
        count = int(count_text) if count_text is not None else None
        if count is not None and count < 1:
            raise _UsageError(f"--count must be at least 1, got {count}")
        winners = _parse_winners(winners_text)
        if not winners and count is None:
            raise _UsageError(
                "--winners is empty; give the winners (or --count for a draw without entrants)"
            )
        for x in [*entrants, *winners]:
            _check_id(x)
    except (_UsageError, ValueError, TypeError) as exc:
        parser.print_usage(sys.stderr)
        print(f"qunbot lottery verify: error: {exc}", file=sys.stderr)
        return 2

    result = verify(
        commitment=commitment_,
        seed_hex=seed_hex,
        entrant_ids=entrants,
        winners=winners,
        winner_count=count,
        entrants_digest=digest,
    )
    for line in result.lines():
        print(line, file=stdout)
    return 0 if result.ok else 1

"""The verifiable lottery core (SPEC.md section 5).

The `spec_*` helpers below are written from SPEC.md alone with hashlib/hmac,
never calling bot.lottery_math, so that the module is checked against the
contract rather than against itself. The fixed vector was computed with
`sha256sum` and `openssl dgst -sha256 -mac HMAC`, outside Python.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.lottery_math import (
    DrawResult,
    Verification,
    commitment,
    draw,
    draw_order,
    entrant_key,
    entrants_digest,
    new_seed,
    reroll,
    verify,
    verify_cli,
)

# --------------------------------------------------------------------------- SPEC.md, independently


def spec_commitment(seed_hex: str) -> str:
    """C = sha256(hex(S)), lowercase hex."""
    return hashlib.sha256(seed_hex.lower().encode("ascii")).hexdigest()


def spec_winners(seed_hex: str, entrants: Sequence[str], n: int) -> list[str]:
    """k(x) = hmac_sha256(key=S_bytes, msg=utf8(x)); sort by k ascending; first n win."""
    s = bytes.fromhex(seed_hex)
    keyed = sorted(
        (hmac.new(s, x.encode("utf-8"), hashlib.sha256).hexdigest(), x) for x in set(entrants)
    )
    return [x for _, x in keyed[:n]]


def spec_digest(entrants: Sequence[str]) -> str:
    """D = sha256("\\n".join(sorted entrant ids))."""
    return hashlib.sha256("\n".join(sorted(set(entrants))).encode("utf-8")).hexdigest()


# Computed outside Python (see the module docstring).
VECTOR_SEED_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
VECTOR_COMMITMENT = "6c86c6aac5fb24bcf5d9939cb7d7d5645ce39418f449e03b262dd4fa14b4b92b"
VECTOR_ENTRANTS = ["wxid_alice", "wxid_bob", "wxid_carol", "wxid_dave", "张三", "wxid_émile"]
VECTOR_KEYS = {
    "wxid_bob": "5bc1c8b6adbffa7c4b104a0dacf3ef4452d00f575b21dfae97b463959a8cc02e",
    "wxid_émile": "80bfd3f3be3fc7305df1bbef8dd0e66ac9dd090031429d301cc316a3c1f598a1",
    "wxid_dave": "9983392c2b2e587ca70acd53e57c933b4379f8a2d8630998630b953904672518",
    "wxid_alice": "9e0bf6da849b2204f41b91859969af38127f289174fd7263edd67a62519588d6",
    "wxid_carol": "b67debdbca7dc75ed4c5a04797d07236cbd81d4302bcaaa5ea29436864c50fcc",
    "张三": "f816bf03f906c81a577a6e55c71fb0f25258befe2deafb9334b12c0a9a74d804",
}
VECTOR_ORDER = ["wxid_bob", "wxid_émile", "wxid_dave", "wxid_alice", "wxid_carol", "张三"]
VECTOR_DIGEST = "43968bcf9f3a5d446f2dc34a225d84da30fea465b8f838a314e658e47349aea6"

ids_strategy = st.lists(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=25,
    unique=True,
)
seeds = st.binary(min_size=32, max_size=32)


# --------------------------------------------------------------------------- primitives


def test_fixed_vector_from_outside_python() -> None:
    seed = bytes.fromhex(VECTOR_SEED_HEX)
    assert commitment(seed) == VECTOR_COMMITMENT
    for x, k in VECTOR_KEYS.items():
        assert entrant_key(seed, x) == k
    assert draw_order(seed, VECTOR_ENTRANTS) == VECTOR_ORDER
    assert entrants_digest(VECTOR_ENTRANTS) == VECTOR_DIGEST
    result = draw(seed, VECTOR_ENTRANTS, 2)
    assert result.winners == ("wxid_bob", "wxid_émile")
    assert result.order == tuple(VECTOR_ORDER)
    assert result.entrants_digest == VECTOR_DIGEST
    assert result.seed_hex == VECTOR_SEED_HEX
    assert result.commitment == VECTOR_COMMITMENT


def test_new_seed_is_32_fresh_bytes() -> None:
    seeds_ = {new_seed() for _ in range(100)}
    assert len(seeds_) == 100
    assert all(isinstance(s, bytes) and len(s) == 32 for s in seeds_)


def test_commitment_is_of_the_hex_text_and_matches_the_revealed_seed() -> None:
    seed = new_seed()
    result = draw(seed, ["a", "b"], 1)
    assert result.commitment == commitment(seed) == spec_commitment(result.seed_hex)
    assert result.seed_hex == seed.hex() and result.seed_hex == result.seed_hex.lower()
    assert commitment(seed) != hashlib.sha256(seed).hexdigest()  # not of the raw bytes


@settings(max_examples=200, deadline=None)
@given(seed=seeds, entrants=ids_strategy, n=st.integers(min_value=1, max_value=30))
def test_draw_equals_independent_recomputation(seed: bytes, entrants: list[str], n: int) -> None:
    result = draw(seed, entrants, n)
    assert list(result.winners) == spec_winners(seed.hex(), entrants, n)
    assert list(result.order) == spec_winners(seed.hex(), entrants, len(entrants))
    assert result.entrants_digest == spec_digest(entrants)
    assert result.commitment == spec_commitment(result.seed_hex)


def test_draw_with_utf8_ids_equals_independent_recomputation() -> None:
    entrants = ["wxid_abc123", "张三", "李四@chatroom", "Ünïcödé", "🎉party", "wxid_x", "王五"]
    for _ in range(50):
        seed = new_seed()
        result = draw(seed, entrants, 3)
        assert list(result.winners) == spec_winners(result.seed_hex, entrants, 3)
        assert result.entrants_digest == spec_digest(entrants)


def test_draw_dedupes_and_handles_few_entrants() -> None:
    seed = new_seed()
    result = draw(seed, ["a", "b", "a", "c", "b"], 2)
    assert sorted(result.order) == ["a", "b", "c"]
    assert result.entrants_digest == entrants_digest(["a", "b", "c"])
    assert draw(seed, ["a", "b"], 5).winners == draw(seed, ["b", "a"], 5).order
    assert draw(seed, [], 1) == DrawResult((), (), spec_digest([]), seed.hex(), commitment(seed))


def test_order_does_not_depend_on_input_order() -> None:
    seed = new_seed()
    ids = [f"wxid_{i}" for i in range(30)]
    assert draw_order(seed, ids) == draw_order(seed, reversed(ids)) == draw_order(seed, set(ids))


@pytest.mark.parametrize(
    ("call", "exc"),
    [
        (lambda: draw(b"short", ["a"], 1), ValueError),
        (lambda: draw("00" * 32, ["a"], 1), TypeError),  # type: ignore[arg-type]
        (lambda: draw(bytes(32), ["a"], 0), ValueError),
        (lambda: draw(bytes(32), "abc", 1), TypeError),
        (lambda: draw(bytes(32), ["a", ""], 1), ValueError),
        (lambda: draw(bytes(32), ["a", "b\nc"], 1), ValueError),
        (lambda: entrants_digest(["x\ny"]), ValueError),
    ],
)
def test_bad_input_is_refused(call: Callable[[], object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        call()


# --------------------------------------------------------------------------- reroll


def test_reroll_follows_the_published_order() -> None:
    seed = bytes.fromhex(VECTOR_SEED_HEX)
    e = VECTOR_ENTRANTS
    # order: bob, émile, dave, alice, carol, 张三; two winners: bob, émile
    assert reroll(seed, e, ["wxid_bob", "wxid_émile"], "wxid_émile") == "wxid_dave"
    assert reroll(seed, e, ["wxid_bob", "wxid_dave"], "wxid_bob") == "wxid_alice"
    # the history may include replaced winners; the answer is the same
    assert reroll(seed, e, ["wxid_bob", "wxid_émile", "wxid_dave"], "wxid_bob") == "wxid_alice"
    assert reroll(seed, e, ["wxid_alice", "wxid_dave"], "wxid_dave") == "wxid_carol"
    assert reroll(seed, e, ["wxid_alice", "wxid_carol"], "wxid_alice") == "张三"
    assert reroll(seed, e, ["张三", "wxid_carol"], "张三") is None


def test_reroll_refuses_inconsistent_input() -> None:
    seed = bytes.fromhex(VECTOR_SEED_HEX)
    e = VECTOR_ENTRANTS
    with pytest.raises(ValueError, match="not a current winner"):
        reroll(seed, e, ["wxid_bob", "wxid_émile"], "wxid_dave")
    with pytest.raises(ValueError, match="not entrants"):
        reroll(seed, e, ["wxid_bob", "mallory"], "wxid_bob")
    with pytest.raises(ValueError, match="duplicates"):
        reroll(seed, e, ["wxid_bob", "wxid_bob"], "wxid_bob")


@settings(max_examples=200, deadline=None)
@given(
    seed=seeds,
    entrants=ids_strategy,
    n=st.integers(min_value=1, max_value=5),
    choices=st.lists(st.integers(min_value=0, max_value=10**6), max_size=30),
)
def test_reroll_never_picks_an_earlier_winner(
    seed: bytes, entrants: list[str], n: int, choices: list[int]
) -> None:
    order = spec_winners(seed.hex(), entrants, len(entrants))
    standing = list(draw(seed, entrants, n).winners)
    every_pick = list(standing)
    for c in choices:
        gone = standing[c % len(standing)]
        nxt = reroll(seed, entrants, standing, gone)
        if nxt is None:
            assert len(every_pick) == len(order)  # everyone has been picked once
            break
        assert nxt not in every_pick
        every_pick.append(nxt)
        # picks are always a prefix of the published order
        assert every_pick == order[: len(every_pick)]
        standing[standing.index(gone)] = nxt


# --------------------------------------------------------------------------- verify


def _published(n_entrants: int = 12, n: int = 3) -> tuple[list[str], DrawResult]:
    entrants = [f"wxid_{i:02d}" for i in range(n_entrants)] + ["张三"]
    return entrants, draw(new_seed(), entrants, n)


def _failed(v: Verification) -> set[str]:
    return {name for name, passed, _ in v.checks if not passed}


def test_verify_accepts_a_correct_draw() -> None:
    entrants, r = _published()
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=entrants,
        winners=r.winners,
        winner_count=3,
        entrants_digest=r.entrants_digest,
    )
    assert v.ok, v.lines()
    assert [name for name, _, _ in v.checks] == [
        "seed",
        "commitment",
        "entrants_digest",
        "winner_count",
        "winners",
    ]
    assert all(detail for _, _, detail in v.checks)
    assert v.lines()[-1] == "OK"
    # case and surrounding blanks in hex do not matter; the digest is optional
    v = verify(
        commitment=r.commitment.upper(),
        seed_hex=f" {r.seed_hex.upper()}\n",
        entrant_ids=entrants,
        winners=r.winners,
    )
    assert v.ok and "entrants_digest" not in {n for n, _, _ in v.checks}


def test_verify_detects_a_wrong_seed() -> None:
    entrants, r = _published()
    v = verify(
        commitment=r.commitment, seed_hex=new_seed().hex(), entrant_ids=entrants, winners=r.winners
    )
    assert not v.ok and "commitment" in _failed(v)
    # a seed that is not even hex, or the wrong length, is a failed check, not an exception
    for bad in ("zz" * 32, r.seed_hex[:-2], ""):
        v = verify(commitment=r.commitment, seed_hex=bad, entrant_ids=entrants, winners=r.winners)
        assert not v.ok and {"seed", "commitment", "winners"} <= _failed(v)


def test_verify_detects_a_tampered_winner() -> None:
    entrants, r = _published()
    outsider = next(x for x in r.order if x not in r.winners)
    tampered = [outsider, *r.winners[1:]]
    v = verify(commitment=r.commitment, seed_hex=r.seed_hex, entrant_ids=entrants, winners=tampered)
    assert not v.ok and _failed(v) == {"winners"}
    # someone who never entered
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=entrants,
        winners=["mallory", *r.winners[1:]],
    )
    assert (
        _failed(v) == {"winners"}
        and "not entrants: mallory" in dict((n, d) for n, _, d in v.checks)["winners"]
    )


def test_verify_detects_a_wrong_order() -> None:
    entrants, r = _published()
    swapped = [r.winners[1], r.winners[0], r.winners[2]]
    v = verify(commitment=r.commitment, seed_hex=r.seed_hex, entrant_ids=entrants, winners=swapped)
    assert _failed(v) == {"winners"}
    assert "wrong order" in v.checks[-1][2]


def test_verify_detects_a_missing_entrant_by_digest() -> None:
    entrants, r = _published()
    loser = r.order[-1]
    shortened = [x for x in entrants if x != loser]
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=shortened,
        winners=r.winners,
        entrants_digest=r.entrants_digest,
    )
    assert _failed(v) == {"entrants_digest"}
    # an added entrant too
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=[*entrants, "wxid_extra"],
        winners=r.winners,
        entrants_digest=r.entrants_digest,
    )
    assert "entrants_digest" in _failed(v)


def test_verify_detects_a_wrong_count() -> None:
    entrants, r = _published(n=3)

    def check(winners: Sequence[str], count: int) -> set[str]:
        return _failed(
            verify(
                commitment=r.commitment,
                seed_hex=r.seed_hex,
                entrant_ids=entrants,
                winners=winners,
                winner_count=count,
            )
        )

    # the lottery had 3 winners but only 2 are published
    assert check(r.winners[:2], 3) == {"winner_count", "winners"}
    # 3 published for a 2-winner lottery
    assert "winner_count" in check(r.winners, 2)
    assert "winner_count" in check(r.winners, 0)


def test_verify_with_fewer_entrants_than_winners() -> None:
    seed = new_seed()
    r = draw(seed, ["a", "b"], 5)
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=["a", "b"],
        winners=r.winners,
        winner_count=5,
    )
    assert v.ok, v.lines()


@settings(max_examples=100, deadline=None)
@given(seed=seeds, entrants=ids_strategy, n=st.integers(min_value=1, max_value=30))
def test_verify_accepts_every_draw(seed: bytes, entrants: list[str], n: int) -> None:
    r = draw(seed, entrants, n)
    v = verify(
        commitment=r.commitment,
        seed_hex=r.seed_hex,
        entrant_ids=entrants,
        winners=r.winners,
        winner_count=n,
        entrants_digest=r.entrants_digest,
    )
    assert v.ok, v.lines()


# --------------------------------------------------------------------------- fairness


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df): the regularized upper incomplete gamma Q(df/2, x/2)."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    if z < a + 1:  # series for P(a, z)
        term = total = 1.0 / a
        k = a
        while abs(term) > abs(total) * 1e-15:
            k += 1
            term *= z / k
            total += term
        return 1.0 - total * math.exp(-z + a * math.log(z) - math.lgamma(a))
    # continued fraction for Q(a, z) (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(-z + a * math.log(z) - math.lgamma(a)) * h


def chi2_pvalue(counts: Counter[object], categories: Sequence[object]) -> tuple[float, float]:
    total = sum(counts[c] for c in categories)
    expected = total / len(categories)
    stat = sum((counts[c] - expected) ** 2 / expected for c in categories)
    return stat, chi2_sf(stat, len(categories) - 1)


# Fresh CSPRNG seeds each run, so a fair implementation fails with probability ALPHA.
ALPHA = 1e-4
DRAWS = 20_000


@pytest.mark.parametrize(
    ("x", "df", "p"),
    # textbook chi-square table values
    [(3.841, 1, 0.05), (16.919, 9, 0.05), (27.877, 9, 0.001), (42.557, 29, 0.05),
     (58.301, 29, 0.001), (33.720, 9, 0.0001), (2.088, 9, 0.99)],
)  # fmt: skip
def test_chi2_helper_matches_tables(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=2e-3)


def test_single_winner_is_uniform() -> None:
    entrants = [f"wxid_member{i}" for i in range(10)]
    wins: Counter[object] = Counter(draw(new_seed(), entrants, 1).winners[0] for _ in range(DRAWS))
    stat, p = chi2_pvalue(wins, entrants)
    assert p > ALPHA, f"chi2={stat:.2f} df=9 p={p:.2e} counts={dict(wins)}"


def test_multi_winner_ordered_pairs_are_uniform() -> None:
    # 6 entrants, 2 winners: all 30 ordered (first, second) pairs equally likely,
    # which covers each entrant's win frequency and the order of the winners.
    entrants = ["wxid_a", "wxid_b", "wxid_c", "张三", "李四", "王五"]
    pairs: Counter[object] = Counter(draw(new_seed(), entrants, 2).winners for _ in range(DRAWS))
    categories = list(itertools.permutations(entrants, 2))
    assert set(pairs) <= set(categories)
    stat, p = chi2_pvalue(pairs, categories)
    assert p > ALPHA, f"chi2={stat:.2f} df=29 p={p:.2e}"


def test_multi_winner_each_place_is_uniform() -> None:
    entrants = [f"wxid_member{i}" for i in range(10)]
    places: list[Counter[object]] = [Counter(), Counter(), Counter()]
    for _ in range(DRAWS):
        for place, w in zip(places, draw(new_seed(), entrants, 3).winners, strict=True):
            place[w] += 1
    for i, place in enumerate(places, 1):
        stat, p = chi2_pvalue(place, entrants)
        # three tests in one: Bonferroni
        assert p > ALPHA / 3, f"place {i}: chi2={stat:.2f} p={p:.2e} counts={dict(place)}"


def test_the_chi_square_check_catches_a_biased_order() -> None:
    # Negative control: sorting by only the first hex digit of the key and breaking
    # the frequent ties by id favours early ids; the same check must reject it.
    entrants = [f"wxid_member{i}" for i in range(10)]
    wins: Counter[object] = Counter()
    for _ in range(5_000):
        seed = new_seed()
        wins[min(entrants, key=lambda x: (entrant_key(seed, x)[:1], x))] += 1
    _, p = chi2_pvalue(wins, entrants)
    assert p < ALPHA


# --------------------------------------------------------------------------- verify_cli


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = verify_cli(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_with_an_entrants_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entrants, r = _published()
    f = tmp_path / "entrants.txt"
    f.write_text("\r\n".join(entrants) + "\r\n\r\n", encoding="utf-8")  # CRLF, blank line
    base = ["--commitment", r.commitment, "--seed", r.seed_hex, "--entrants", str(f)]
    code, out, _ = _cli([*base, "--winners", ",".join(r.winners), "--count", "3",
                         "--digest", r.entrants_digest], capsys)  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "OK"
    assert out.count("[PASS]") == 5

    wrong = ",".join(reversed(r.winners))
    code, out, _ = _cli([*base, "--winners", wrong], capsys)
    assert code == 1 and out.splitlines()[-1] == "FAILED" and "[FAIL] winners" in out

    code, out, _ = _cli([*base, "--winners", ",".join(r.winners), "--count", "4"], capsys)
    assert code == 1 and "[FAIL] winner_count" in out


def test_cli_with_repeated_entrant(capsys: pytest.CaptureFixture[str]) -> None:
    r = draw(new_seed(), ["张三", "李四", "wxid_x"], 1)
    argv = ["--commitment", r.commitment, "--seed", r.seed_hex, "--winners", r.winners[0]]
    for x in ["张三", "李四", "wxid_x"]:
        argv += ["--entrant", x]
    assert _cli(argv, capsys)[0] == 0
    assert _cli([*argv[:3], new_seed().hex(), *argv[4:]], capsys)[0] == 1


def test_cli_with_the_bots_json_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entrants, r = _published()
    f = tmp_path / "draw.json"
    f.write_text(json.dumps(r.export(), ensure_ascii=False), encoding="utf-8")
    code, out, _ = _cli(["--entrants", str(f)], capsys)
    assert code == 0 and out.splitlines()[-1] == "OK"
    assert "[PASS] entrants_digest" in out and "[PASS] winner_count" in out

    # the minimal documented keys are enough
    minimal = {"commitment": r.commitment, "seed": r.seed_hex, "entrants": entrants,
               "winners": list(r.winners)}  # fmt: skip
    f.write_text(json.dumps(minimal), encoding="utf-8")
    assert _cli(["--entrants", str(f)], capsys)[0] == 0

    # the commitment seen in chat (command line) overrides the file's
    assert _cli(["--entrants", str(f), "--commitment", "0" * 64], capsys)[0] == 1

    tampered = dict(minimal, winners=list(reversed(r.winners)))
    f.write_text(json.dumps(tampered), encoding="utf-8")
    code, out, _ = _cli(["--entrants", str(f)], capsys)
    assert code == 1 and out.splitlines()[-1] == "FAILED"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--seed", "00" * 32, "--winners", "a", "--entrant", "a"],  # no commitment
        ["--commitment", "c", "--winners", "a", "--entrant", "a"],  # no seed
        ["--commitment", "c", "--seed", "00", "--entrant", "a"],  # no winners
        ["--commitment", "c", "--seed", "00", "--winners", "a"],  # no entrants
        ["--commitment", "c", "--seed", "00", "--winners", "a", "--entrant", "a",
         "--entrants", "f"],  # both sources
        ["--commitment", "c", "--seed", "00", "--winners", "a", "--entrant", "a",
         "--count", "0"],
        ["--commitment", "c", "--seed", "00", "--winners", "a", "--entrant", "a",
         "--count", "two"],
        ["--commitment", "c", "--seed", "00", "--winners", "a", "--entrants", "/nonexistent"],
        ["--bogus"],
    ],
)  # fmt: skip
def test_cli_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(argv, capsys)
    assert code == 2
    assert "OK" not in out and err


def test_cli_bad_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--commitment", "c", "--seed", "00", "--winners", "a", "--entrants"]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json", encoding="utf-8")
    no_entrants = tmp_path / "none.json"
    no_entrants.write_text('{"commitment": "c"}', encoding="utf-8")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    for f in (bad_json, no_entrants, binary):
        assert _cli([*base, str(f)], capsys)[0] == 2


def test_cli_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["--help"], capsys)
    assert code == 0 and "--commitment" in out

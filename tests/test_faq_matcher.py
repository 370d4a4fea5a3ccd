"""Tests of bot/faq_matcher.py (timing lives in bench/faq_eval.py, not here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from bot.faq_matcher import (
    DEFAULT_CONFIDENT,
    FaqDoc,
    FaqIndex,
    Match,
    group_misses,
    is_question,
    normalize,
)

DATA = Path(__file__).parent / "data" / "faq_eval.yaml"


@pytest.fixture(scope="module")
def evalset() -> dict[str, list[dict[str, object]]]:
    data: dict[str, list[dict[str, object]]] = yaml.safe_load(DATA.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def index(evalset: dict[str, list[dict[str, object]]]) -> FaqIndex:
    docs = [
        FaqDoc(str(e["key"]), tuple(str(q) for q in e["questions"]), str(e["answer"]))  # type: ignore[attr-defined]
        for e in evalset["entries"]
    ]
    return FaqIndex(docs)


# ---- normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＢＣ１２３？", "abc123"),  # full width -> half width, case
        ("請問會員卡可以轉讓嗎", "请问会员卡可以转让吗"),  # traditional -> simplified
        ("週末營業時間？", "周末营业时间"),  # OpenCC t2s (characters)
        ("一目瞭然 回覆", "一目了然 回复"),  # OpenCC phrase table (瞭/覆 alone stay)
        ("头发干净了", "头发干净了"),  # already simplified: unchanged
        ("包邮吗？？！！", "包邮吗"),  # punctuation
        ("包邮吗😂😂[捂脸]", "包邮吗"),  # emoji and WeChat emoji codes
        ("@小王\u2005包邮吗", "包邮吗"),  # WeChat mention
        ("@Tom Lee\u2005hi  there", "hi there"),  # mention with a space in the name
        ("  多个   空格\n换行 ", "多个 空格 换行"),
        ("Is SHIPPING free?", "is shipping free"),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("包邮吗", True),
        ("包邮吗？", True),
        ("运费怎么算?", True),
        ("你们家包不包邮", True),
        ("能洗澡不", True),
        ("那你呢😂", True),
        ("is shipping free", True),
        ("好的", False),
        ("哈哈哈", False),
        ("快递收到了", False),
        ("thanks", False),
    ],
)
def test_is_question(text: str, expected: bool) -> None:
    assert is_question(text) is expected


# ---- matching: typos, homophones, synonyms, English -----------------------------------------


def _best(index: FaqIndex, text: str) -> Match:
    top = index.top(text, 1)
    assert top, text
    return top[0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("包油吗", "r01"),  # homophone typo (包邮)
        ("优惠卷在哪领", "r05"),  # common typo (优惠券)
        ("体检保告几天能出来", "h05"),  # homophone typo (报告)
        ("私叫课怎么预约", "f03"),  # homophone typo (私教)
        ("昨天的课有重播吗", "e01"),  # synonym 重播 -> 回放
        ("你们卖的会不会是高仿", "r06"),  # synonym 高仿 -> 正品/假货
        ("發票怎麼開", "r08"),  # traditional characters
        ("ＰＰＴ在哪里下载？", "e06"),  # full width, synonym
        ("can I get a refund, how long does it take", "r04"),  # English
        ("what are the opening hours of the gym", "f01"),
        ("健身房开门几点", "f01"),  # reordered
        ("亲 请问一下你们这边发什么快递呀", "r07"),  # extra words
    ],
)
def test_paraphrase_cases(index: FaqIndex, text: str, key: str) -> None:
    m = _best(index, text)
    assert m.key == key, (text, m)
    assert m.fair


@pytest.mark.parametrize(
    "text",
    [
        "好的",
        "收到",
        "谢谢",
        "谢谢老师",
        "哈哈哈哈",
        "😂😂😂",
        "[捂脸]",
        "早上好",
        "晚安",
        "嗯嗯",
        "ok",
        "thanks",
        "666",
        "+1",
        "@小王\u2005收到",
        "",
        "   ",
    ],
)
def test_chatter_is_not_answered(index: FaqIndex, text: str) -> None:
    assert index.match(text) is None


def test_scores_are_ordered_and_bounded(index: FaqIndex) -> None:
    top = index.top("怎么退货", 3)
    assert len(top) == 3
    assert top[0].key == "r03" and top[0].confident
    assert all(0.0 <= m.score <= 1.0 for m in top)
    assert [m.score for m in top] == sorted((m.score for m in top), reverse=True)
    assert len({m.key for m in top}) == 3  # one form per entry


def test_thresholds_validated() -> None:
    with pytest.raises(ValueError):
        FaqIndex(confident=0.3, fair=0.6)


# ---- keys restriction, add/remove/update ---------------------------------------------------


@pytest.mark.parametrize("text", ["现在几点了？", "几点", "多少钱", "地址呢", "什么时候？"])
def test_questions_naming_no_topic_match_nothing(index: FaqIndex, text: str) -> None:
    # Generic intent words alone would otherwise pick whichever entry is shortest.
    assert index.top(text) == []


def test_keys_restriction() -> None:
    idx = FaqIndex(
        [
            FaqDoc("room:a@chatroom#1", ("几点开门",), "A: 9点"),
            FaqDoc("room:b@chatroom#1", ("几点开门",), "B: 10点"),
            FaqDoc("global#1", ("怎么联系客服",), "找群主"),
        ]
    )
    allowed = {"room:b@chatroom#1", "global#1"}
    m = idx.match("请问几点开门？", keys=allowed)
    assert m is not None and m.key == "room:b@chatroom#1"
    m = idx.match("客服怎么联系", keys={"room:a@chatroom#1"})
    assert m is None or m.key == "room:a@chatroom#1"
    assert idx.top("几点开门", keys=set()) == []


def test_add_remove_update_take_effect_at_once() -> None:
    idx = FaqIndex()
    assert idx.match("包邮吗") is None
    idx.add(FaqDoc("global#1", ("包邮吗", "运费怎么算"), "满99包邮"))
    m = idx.match("你们包不包邮")
    assert m is not None and m.key == "global#1" and m.question == "包邮吗"
    idx.add(FaqDoc("global#2", ("怎么退货",), "7天无理由"))
    idx.update(FaqDoc("global#1", ("发什么快递",), "中通"))
    assert len(idx) == 2 and idx.get("global#1") is not None
    m = idx.match("包邮吗")
    assert m is None or m.key != "global#1" or m.question == "发什么快递"
    m = idx.match("发的什么快递")
    assert m is not None and m.key == "global#1"
    idx.remove("global#1")
    idx.remove("global#1")  # idempotent
    assert "global#1" not in idx
    m = idx.match("发的什么快递")
    assert m is None or m.key == "global#2"
    assert idx._wpost.keys() >= {w for f in idx._forms.values() for w in f.an.words}
    idx.remove("global#2")
    assert not idx._wpost and not idx._gpost and not idx._vocab  # nothing left behind


def test_domain_words_from_questions() -> None:
    idx = FaqIndex([FaqDoc("global#1", ("蛋挞皮在哪买",), "超市冷柜")])
    m = idx.match("蛋挞皮哪里有卖")
    assert m is not None and m.key == "global#1"


# ---- misses grouping ----------------------------------------------------------------------


def test_group_misses() -> None:
    texts = [
        "周日开门吗",
        "周日开门吗？",
        "星期天开不开门",
        "有没有停车位",
        "停车位有吗",
        "周日开门吗",
        "可以带狗吗",
    ]
    groups = group_misses(texts)
    assert groups[0].count >= 4
    assert normalize(groups[0].representative) == "周日开门吗"
    assert sum(g.count for g in groups) == len(texts)
    assert [g.count for g in groups] == sorted((g.count for g in groups), reverse=True)
    parking = [g for g in groups if "停车位" in g.representative]
    assert parking and parking[0].count == 2
    assert group_misses([]) == []
    assert len(group_misses(["a", "b"], threshold=1.01)) == 2


# ---- the labelled set: acceptance targets ---------------------------------------------------


def test_labelled_set_meets_targets(
    index: FaqIndex, evalset: dict[str, list[dict[str, object]]]
) -> None:
    paras = evalset["paraphrases"]
    chatter = [str(c) for c in evalset["chatter"]]
    assert len(evalset["entries"]) >= 40 and len(paras) >= 200 and len(chatter) >= 200
    correct = 0
    wrong_confident = 0
    for p in paras:
        top = index.top(str(p["text"]), 1)
        if top and top[0].key == p["key"]:
            correct += 1
        elif top and top[0].confident:
            wrong_confident += 1
    false_answers = sum(1 for c in chatter if (m := index.match(c)) is not None and m.confident)
    accuracy = correct / len(paras)
    assert accuracy >= 0.90, accuracy
    assert false_answers / len(chatter) <= 0.02, false_answers
    assert wrong_confident / len(paras) <= 0.05, wrong_confident
    assert index.confident == DEFAULT_CONFIDENT


def test_bench_module_loads() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import faq_eval

    ev = faq_eval.load()
    assert len(ev.docs) >= 40
    assert len(faq_eval.synthetic_docs(100)) == 100
    assert {faq_eval.split_of(t) for t, _ in ev.paraphrases} == {"tune", "test"}

"""Evaluate bot/faq_matcher.py on tests/data/faq_eval.yaml against two naive baselines.

    python bench/faq_eval.py            # figures for the matcher and the baselines
    python bench/faq_eval.py --misses   # also list failures of the TUNING half only
    python bench/faq_eval.py --fit      # refit the logistic calibration on the tuning half

The labelled set is split in two halves by a hash of each message (not by hand): weights,
thresholds and the synonym table were tuned looking at the tuning half only; the test half
is reported beside it so over-fitting shows.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot import faq_matcher as fm  # noqa: E402
from bot.faq_matcher import FaqDoc, FaqIndex, normalize  # noqa: E402

DATA = ROOT / "tests" / "data" / "faq_eval.yaml"


@dataclass(frozen=True)
class EvalSet:
    docs: list[FaqDoc]
    paraphrases: list[tuple[str, str]]  # (text, key)
    chatter: list[str]


def load(path: Path = DATA) -> EvalSet:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    docs = [FaqDoc(e["key"], tuple(e["questions"]), e["answer"]) for e in raw["entries"]]
    paras = [(str(p["text"]), str(p["key"])) for p in raw["paraphrases"]]
    return EvalSet(docs, paras, [str(c) for c in raw["chatter"]])


def split_of(text: str) -> str:
    """'tune' or 'test', from a hash of the text (stable, not chosen by hand)."""
    return "tune" if hashlib.sha1(text.encode()).digest()[0] % 2 == 0 else "test"


# ---- synthetic distractor entries (for the 2,000-entry timing and accuracy) ---------------

_SYNTH: list[tuple[list[str], list[tuple[str, str]]]] = [
    (
        [
            c + i
            for c in "黑白红蓝灰粉绿黄紫棕"
            for i in (
                "卫衣",
                "T恤",
                "外套",
                "牛仔裤",
                "连衣裙",
                "帆布鞋",
                "双肩包",
                "围巾",
                "衬衫",
                "羽绒服",
            )
        ],
        [
            ("{x}还有货吗", "{x}有现货吗"),
            ("{x}是什么材质", "{x}面料怎么样"),
            ("{x}怎么清洗", "{x}能机洗吗"),
            ("{x}会掉色吗", "{x}掉不掉色"),
            ("{x}有几个尺码", "{x}有大码吗"),
            ("{x}什么时候补货", "{x}断货了还会补吗"),
        ],
    ),
    (
        [
            s + lv
            for s in (
                "高数",
                "英语",
                "雅思",
                "Python",
                "会计",
                "考研政治",
                "钢琴",
                "绘画",
                "摄影",
                "日语",
                "编程",
                "写作",
            )
            for lv in ("初级班", "中级班", "高级班", "周末班", "暑假班", "冲刺班", "精品班")
        ],
        [
            ("{x}的上课地点在哪", "{x}在哪个教室"),
            ("{x}用什么教材", "{x}要买书吗"),
            ("{x}一共几节课", "{x}课时多少"),
            ("{x}是哪个老师教", "{x}的老师是谁"),
            ("{x}适合零基础吗", "{x}没基础能学吗"),
            ("{x}有没有团购价", "{x}几个人一起报便宜吗"),
        ],
    ),
    (
        [
            d + i
            for d in (
                "眼科",
                "牙科",
                "皮肤科",
                "骨科",
                "妇科",
                "中医科",
                "耳鼻喉科",
                "心内科",
                "消化科",
                "康复科",
                "口腔科",
                "内分泌科",
                "神经内科",
                "呼吸科",
                "泌尿科",
            )
            for i in ("专家号", "普通号", "夜间门诊", "检查", "住院部", "特需门诊")
        ],
        [
            ("{x}周几有", "{x}哪天有"),
            ("{x}在几楼", "{x}怎么找"),
            ("{x}要排队多久", "{x}人多吗"),
            ("{x}要花多少钱", "{x}贵不贵"),
            ("{x}可以加号吗", "{x}还能加吗"),
            ("{x}需要转诊吗", "{x}要转诊单吗"),
        ],
    ),
    (
        [
            b + i
            for b in ("东门店", "西湖店", "万达店", "科技园店")
            for i in (
                "跑步机",
                "划船机",
                "史密斯机",
                "龙门架",
                "哑铃区",
                "杠铃",
                "椭圆机",
                "普拉提",
                "拳击课",
                "游泳池",
                "尊巴课",
                "壶铃",
                "战绳",
                "TRX",
                "深蹲架",
                "卧推凳",
                "桑拿房",
                "拉伸区",
                "体测仪",
                "攀岩墙",
            )
        ],
        [
            ("{x}怎么用", "{x}有人教吗"),
            ("{x}要排队吗", "{x}人多不多"),
            ("{x}坏了找谁", "{x}报修找谁"),
            ("{x}几点能用", "{x}开放时间"),
            ("{x}另外收费吗", "{x}要加钱吗"),
            ("{x}有几台", "{x}数量多吗"),
        ],
    ),
]


def synthetic_docs(n: int) -> list[FaqDoc]:
    streams = []
    for items, templates in _SYNTH:
        streams.append([(x, t) for t in templates for x in items])
    out: list[FaqDoc] = []
    for k, row in enumerate(itertools.zip_longest(*streams)):
        for j, cell in enumerate(row):
            if cell is None or len(out) >= n:
                continue
            x, (a, b) = cell
            forms = (a.format(x=x), b.format(x=x)) if (k + j) % 3 else (a.format(x=x),)
            out.append(FaqDoc(f"synth#{len(out)}", forms, "(synthetic)"))
    return out


# ---- matchers under test ------------------------------------------------------------------

# returns (key or None, confident?, fair?)
Answer = tuple[str | None, bool, bool]


def make_exact(docs: Sequence[FaqDoc]) -> Callable[[str], Answer]:
    table = {normalize(q): d.key for d in docs for q in d.questions}

    def answer(text: str) -> Answer:
        k = table.get(normalize(text))
        return k, k is not None, k is not None

    return answer


def make_substring(docs: Sequence[FaqDoc]) -> Callable[[str], Answer]:
    forms = sorted(
        ((normalize(q), d.key) for d in docs for q in d.questions), key=lambda f: -len(f[0])
    )

    def answer(text: str) -> Answer:
        t = normalize(text)
        if len(t) >= 2:
            for f, k in forms:
                if f in t or t in f:
                    return k, True, True
        return None, False, False

    return answer


def make_matcher(idx: FaqIndex) -> Callable[[str], Answer]:
    def answer(text: str) -> Answer:
        top = idx.top(text, 1)
        if not top:
            return None, False, False
        m = top[0]
        return m.key, m.confident, m.fair

    return answer


@dataclass
class Figures:
    n_para: int
    top1: float
    conf_rate: float
    conf_wrong: float
    fair_rate: float
    fair_wrong: float
    chatter_conf: float
    chatter_fair: float


def evaluate(answer: Callable[[str], Answer], ev: EvalSet, part: str | None) -> Figures:
    paras = [(t, k) for t, k in ev.paraphrases if part is None or split_of(t) == part]
    chat = [t for t in ev.chatter if part is None or split_of(t) == part]
    top1 = conf = conf_wrong = fair = fair_wrong = 0
    for t, k in paras:
        got, c, f = answer(t)
        top1 += got == k
        conf += c and got == k
        conf_wrong += c and got != k
        fair += f and got == k
        fair_wrong += f and got != k
    cc = cf = 0
    for t in chat:
        _, c, f = answer(t)
        cc += c
        cf += f
    n, m = len(paras), len(chat)
    return Figures(n, top1 / n, conf / n, conf_wrong / n, fair / n, fair_wrong / n, cc / m, cf / m)


def timing(idx: FaqIndex, texts: Sequence[str], rounds: int = 3) -> tuple[float, float]:
    for t in texts:  # warm caches
        idx.match(t)
    samples: list[float] = []
    for _ in range(rounds):
        for t in texts:
            t0 = time.perf_counter()
            idx.match(t)
            samples.append(time.perf_counter() - t0)
    samples.sort()
    p99 = samples[min(len(samples) - 1, math.ceil(0.99 * len(samples)) - 1)]
    return statistics.median(samples) * 1e3, p99 * 1e3


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


# ---- calibration fit ----------------------------------------------------------------------


def features_for(idx: FaqIndex, text: str) -> tuple[list[float], str | None]:
    feats, cues = idx._score(text, None)
    if not feats:
        return [], None
    f = feats[0]
    margin = max(0.0, f.rank - (feats[1].rank if len(feats) > 1 else 0.0))
    return list(f.vector(margin, cues)), f.form.key


def fit(ev: EvalSet) -> None:
    idx = FaqIndex(ev.docs)
    xs: list[list[float]] = []
    ys: list[int] = []
    for t, k in ev.paraphrases:
        if split_of(t) != "tune":
            continue
        x, got = features_for(idx, t)
        if x:
            xs.append(x)
            ys.append(int(got == k))
    for t in ev.chatter:
        if split_of(t) != "tune":
            continue
        x, _ = features_for(idx, t)
        if x:
            xs.append(x)
            ys.append(0)
    w = [0.0] * (len(xs[0]) + 1)
    lr, l2 = 0.5, 1e-3
    for _ in range(20000):
        grad = [0.0] * len(w)
        for x, y in zip(xs, ys, strict=True):
            z = w[0] + sum(wi * xi for wi, xi in zip(w[1:], x, strict=True))
            p = 1 / (1 + math.exp(-z))
            grad[0] += p - y
            for i, xi in enumerate(x):
                grad[i + 1] += (p - y) * xi
        for i in range(len(w)):
            w[i] -= lr * (grad[i] / len(xs) + (l2 * w[i] if i else 0.0))
    print("fitted _CAL =", tuple(round(v, 2) for v in w), f"on {len(xs)} tuning samples")


# ---- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--misses", action="store_true", help="list tuning-half failures")
    ap.add_argument("--fit", action="store_true", help="refit calibration on the tuning half")
    args = ap.parse_args()
    ev = load()
    if args.fit:
        fit(ev)
        return

    t0 = time.perf_counter()
    idx = FaqIndex(ev.docs)
    build40 = time.perf_counter() - t0
    print(
        f"labelled set: {len(ev.docs)} entries, {len(ev.paraphrases)} paraphrases, "
        f"{len(ev.chatter)} chatter; thresholds confident={idx.confident} fair={idx.fair}"
    )
    systems: list[tuple[str, Callable[[str], Answer]]] = [
        ("matcher", make_matcher(idx)),
        ("exact", make_exact(ev.docs)),
        ("substring", make_substring(ev.docs)),
    ]
    head = (
        f"{'system':<10} {'part':<5} {'n':>4} {'top-1':>7} {'ans@conf':>9} {'wrong@conf':>11}"
        f" {'ans@fair':>9} {'wrong@fair':>11} {'chat@conf':>10} {'chat@fair':>10}"
    )
    print(head)
    print("-" * len(head))
    for name, ans in systems:
        for part in ("tune", "test", None):
            f = evaluate(ans, ev, part)
            print(
                f"{name:<10} {part or 'all':<5} {f.n_para:>4} {pct(f.top1):>7} "
                f"{pct(f.conf_rate):>9} {pct(f.conf_wrong):>11} {pct(f.fair_rate):>9} "
                f"{pct(f.fair_wrong):>11} {pct(f.chatter_conf):>10} {pct(f.chatter_fair):>10}"
            )
    print(
        "(top-1: best entry is the labelled one; ans@X: answered correctly at threshold X;"
        " wrong@X: answered wrongly; chat@X: chatter answered)"
    )

    # calibration check on the test half: score bins vs precision
    bins = [(0.0, 0.45), (0.45, 0.8), (0.8, 0.9), (0.9, 1.01)]
    rows = {b: [0, 0] for b in bins}
    for t, k in ev.paraphrases:
        if split_of(t) != "test":
            continue
        top = idx.top(t, 1)
        if top:
            for b in bins:
                if b[0] <= top[0].score < b[1]:
                    rows[b][0] += 1
                    rows[b][1] += top[0].key == k
    for t in ev.chatter:
        if split_of(t) != "test":
            continue
        top = idx.top(t, 1)
        if top:
            for b in bins:
                if b[0] <= top[0].score < b[1]:
                    rows[b][0] += 1
    print("calibration (test half, paraphrases+chatter): score bin -> share correct")
    print(
        "  "
        + "  ".join(
            f"[{lo:.2f},{min(hi, 1.0):.2f}): {c}/{n}" + (f"={c / n:.2f}" if n else "")
            for (lo, hi), (n, c) in rows.items()
        )
    )

    texts = [t for t, _ in ev.paraphrases] + ev.chatter
    med, p99 = timing(idx, texts)
    print(
        f"time per match, {len(idx)} entries: median {med:.3f} ms, p99 {p99:.3f} ms"
        f" (index build {build40 * 1e3:.0f} ms incl. jieba load)"
    )
    big_docs = ev.docs + synthetic_docs(2000 - len(ev.docs))
    t0 = time.perf_counter()
    big = FaqIndex(big_docs)
    build = time.perf_counter() - t0
    med, p99 = timing(big, texts)
    print(
        f"time per match, {len(big)} entries: median {med:.3f} ms, p99 {p99:.3f} ms"
        f" (index build {build * 1e3:.0f} ms)"
    )
    t0 = time.perf_counter()
    for d in ev.docs[:20]:
        big.remove(d.key)
        big.add(d)
    print(
        f"edit (remove+add) at {len(big)} entries: {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms"
    )
    for name, ans in (
        ("matcher", make_matcher(big)),
        ("exact", make_exact(big_docs)),
        ("substring", make_substring(big_docs)),
    ):
        f = evaluate(ans, ev, None)
        print(
            f"with 2,000 entries  {name:<10} top-1 {pct(f.top1)}  ans@conf {pct(f.conf_rate)}"
            f"  wrong@conf {pct(f.conf_wrong)}  chat@conf {pct(f.chatter_conf)}"
            f"  chat@fair {pct(f.chatter_fair)}"
        )

    if args.misses:
        print("\ntuning-half failures (matcher, 48 entries):")
        for t, k in ev.paraphrases:
            if split_of(t) != "tune":
                continue
            top = idx.top(t, 2)
            if not top or top[0].key != k or not top[0].confident:
                print(f"  PARA {k} {t!r} -> {[(m.key, m.score, m.question) for m in top]}")
        for t in ev.chatter:
            if split_of(t) != "tune":
                continue
            top = idx.top(t, 1)
            if top and top[0].fair:
                print(f"  CHAT {t!r} -> {[(m.key, m.score, m.question) for m in top]}")
    _ = fm


if __name__ == "__main__":
    main()

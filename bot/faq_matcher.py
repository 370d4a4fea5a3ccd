"""Chinese-aware FAQ matching (pure: no I/O, no global state beyond caches).

Pipeline for a question form (indexing) and a member's message (query):

1. ``normalize``: @mentions, WeChat ``[表情]`` codes and emoji removed, NFKC (full width ->
   half width), lower case, traditional -> simplified (OpenCC t2s tables via the Apache-2.0
   ``opencc-python-reimplemented``; zhconv is GPL), punctuation -> space.
2. Homophone repair (queries only): a 2-4 character span that is not a dictionary word but
   whose toneless pinyin equals a word of the index vocabulary is replaced by that word
   (包油 -> 包邮, 私叫 -> 私教, 保告 -> 报告).
3. Synonym folding: a small hand-written domain table maps variants (Chinese, English and
   common typos) onto one canonical word (重播/录播/replay -> 回放, 优惠卷 -> 优惠券).
4. Tokens: jieba (search mode, no HMM, domain words added at run time) minus stop words, and
   character uni/bigrams of the remaining content.
5. Retrieval over every question form of every entry with an inverted index; IDF-weighted
   Dice overlap on words and on character n-grams, plus a rapidfuzz ratio, rank the forms.
6. The best entry's features (similarity, margin over the next entry, whether the message
   reads as a question) go through a logistic calibration fitted on the tuning half of
   ``tests/data/faq_eval.yaml``; the result is a probability-like score in 0..1 that the two
   thresholds (``confident`` for unprompted group answers, ``fair`` otherwise) apply to.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jieba
from opencc import OpenCC
from pypinyin import Style, pinyin
from rapidfuzz import fuzz

__all__ = [
    "DEFAULT_CONFIDENT",
    "DEFAULT_FAIR",
    "FaqDoc",
    "FaqIndex",
    "Match",
    "MissGroup",
    "group_misses",
    "is_question",
    "normalize",
]

DEFAULT_CONFIDENT = 0.80
DEFAULT_FAIR = 0.45

# --------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------

_MENTION_WX = re.compile(r"@[^@\u2005\n]{1,40}\u2005")
_MENTION_PLAIN = re.compile(r"(?:(?<=\s)|^)@[^\s@]{1,32}(?=\s|$)")
_WX_EMOJI = re.compile(r"\[[\u4e00-\u9fffa-zA-Z]{1,6}\]")
_SPACES = re.compile(r"\s+")


def _keep(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "LN"


@lru_cache(maxsize=1)
def _t2s() -> tuple[Any, frozenset[str]]:
    """The OpenCC t2s converter and the characters it can change.

    The pure-Python converter costs ~0.05 ms per call; most messages are already simplified,
    so text without a character that some table entry rewrites skips it (same result)."""
    cc = OpenCC("t2s")
    cc.convert("")  # loads the tables
    triggers: set[str] = set()
    try:
        for group in cc._dict_chain_data:
            for _max, _min, table in group if isinstance(group, list) else [group]:
                for key, value in table.items():
                    first = value.split(" ")[0]
                    if len(first) != len(key):
                        triggers.update(key)
                    else:
                        triggers.update(k for k, v in zip(key, first, strict=True) if k != v)
    except (AttributeError, TypeError, ValueError):  # layout changed: always convert
        return cc, frozenset()
    return cc, frozenset(triggers)


def to_simplified(text: str) -> str:
    cc, triggers = _t2s()
    if triggers and triggers.isdisjoint(text):
        return text
    return str(cc.convert(text))


def normalize(text: str) -> str:
    """Canonical surface form: no mentions/emoji/punctuation, half width, lower, simplified."""
    t = _MENTION_WX.sub(" ", text)
    t = _MENTION_PLAIN.sub(" ", t)
    t = _WX_EMOJI.sub(" ", t)
    t = unicodedata.normalize("NFKC", t).lower()
    t = to_simplified(t)
    t = "".join(ch if _keep(ch) else " " for ch in t)
    return _SPACES.sub(" ", t).strip()


# --------------------------------------------------------------------------------------------
# questions
# --------------------------------------------------------------------------------------------

_Q_MARK = re.compile(r"[?？]")
_Q_TAIL = re.compile(r"(吗|嘛|么|呢|不|没|没有|否|不成)$")
_A_NOT_A = re.compile(r"([\u4e00-\u9fff])[不没]\1|可不可以|有没有|是不是|要不要|能不能")
_EN_Q = re.compile(
    r"^(how|what|when|where|why|who|which|can|could|do|does|did|is|are|will|would|should|"
    r"may|any)\b"
)
_STATEMENT = re.compile(r"已经|终于|刚刚|刚才|了$")
_Q_WORDS = re.compile(r"怎么|怎样|如何|什么|啥|哪|几|多少|多久|咋|为何|为什么|请问|谁|吗")


def is_question(text: str) -> bool:
    """Whether the message is asked as a question (question mark, 吗/呢 tail, A-not-A, English)."""
    if _Q_MARK.search(text):
        return True
    t = normalize(text)
    if not t:
        return False
    return bool(_Q_TAIL.search(t) or _A_NOT_A.search(t) or _EN_Q.search(t))


def _interrogative(norm: str) -> bool:
    return bool(
        _Q_TAIL.search(norm) or _A_NOT_A.search(norm) or _EN_Q.search(norm) or _Q_WORDS.search(norm)
    )


# --------------------------------------------------------------------------------------------
# domain lexicon: canonical word -> variants. Hand-written for the four scenario domains
# (retail, education, health, fitness) plus generic intents. Variants are replaced as
# strings before segmentation, longest first; single characters are never variants.
# --------------------------------------------------------------------------------------------

SYNONYMS: dict[str, tuple[str, ...]] = {
    # generic intents
    "时间": (
        "几点钟",
        "几点",
        "什么时候",
        "啥时候",
        "什么时间",
        "啥时间",
        "何时",
        "几号",
        "哪天",
        "when",
    ),
    "周日": ("星期天", "星期日", "礼拜天", "礼拜日", "sunday"),
    "周六": ("星期六", "礼拜六", "saturday"),
    "周末": ("星期六日", "礼拜六日", "weekend", "weekends"),
    "多久": ("多长时间", "多少天", "几天", "要多久", "how long"),
    "价格": (
        "多少钱",
        "什么价",
        "啥价",
        "价钱",
        "价位",
        "费用",
        "收费",
        "how much",
        "price",
        "cost",
        "fee",
        "fees",
    ),
    "地址": ("位置", "地点", "在哪儿", "怎么走", "address", "location"),
    "修改": ("更改", "变更", "改一下", "改成", "换地址", "change"),
    "预约": ("约号", "提前约", "book", "booking", "appointment", "reserve"),
    "联系": ("找谁", "contact"),
    "下载": ("download",),
    "提交": ("上交", "上传", "交到", "交给", "发到", "submit", "upload"),
    "免费": ("不要钱", "free"),
    "朋友": ("好友", "同学", "friend", "friends"),
    # retail
    "包邮": ("免运费", "免邮", "不要运费", "free shipping", "shipping free"),
    "运费": ("邮费", "快递费", "shipping"),
    "发货": ("发出来", "发出去", "寄出", "出货", "ship", "shipped", "dispatch"),
    "退货": ("退回去", "退回", "退换", "return"),
    "退款": ("退钱", "返款", "钱退", "refund", "refunds"),
    "到账": ("到帐", "到卡", "收到钱"),
    "优惠券": (
        "优惠卷",
        "优惠劵",
        "领券",
        "抵用券",
        "折扣券",
        "代金券",
        "新人券",
        "coupon",
        "coupons",
    ),
    "正品": ("假货", "真货", "正版", "高仿", "山寨", "仿品", "authentic", "fake", "genuine"),
    "快递": (
        "物流",
        "包裹",
        "快件",
        "单号",
        "顺丰",
        "中通",
        "圆通",
        "韵达",
        "courier",
        "tracking",
        "package",
        "parcel",
    ),
    "发票": ("开票", "专票", "普票", "invoice", "receipt"),
    "收货地址": ("收件地址", "收货人地址"),
    "尺码": ("码数", "尺寸", "大小码", "穿什么码", "哪个码", "size"),
    "积分": ("points",),
    "抵现": ("抵扣", "抵钱", "当钱用", "兑换"),
    # education
    "回放": ("重播", "录播", "回看", "重看", "录屏", "replay", "recording"),
    "直播": ("live",),
    "上课": ("听课", "class", "lesson"),
    "作业": ("功课", "homework", "assignment"),
    "退课": ("退费", "退学费", "不想学了"),
    "学费": ("课程费", "课费", "tuition"),
    "证书": ("结业证", "证明", "certificate", "diploma"),
    "课件": ("讲义", "ppt", "课程资料", "资料", "slides", "materials"),
    "试听": ("试课", "旁听", "听一节试试", "trial"),
    "请假": ("来不了", "有事不能来", "缺课", "缺了一节课", "absent", "absence", "leave"),
    "分期": ("分期付款", "分几期", "分期付", "花呗", "installment", "installments"),
    "助教": ("班主任", "助教老师", "教务", "assistant"),
    "报名": ("报班", "报课", "enroll", "enrollment", "register", "signup"),
    "开班": ("开课", "下一期", "下期", "开学", "next term"),
    "电脑": ("手机", "平板", "ipad", "computer", "laptop", "phone"),
    "软件": ("app", "客户端", "software", "zoom", "腾讯会议"),
    # health
    "挂号": ("挂个号", "挂专家号", "拿号"),
    "门诊": ("坐诊", "出诊", "看诊", "看病开门", "上班", "下班", "clinic"),
    "医保": ("医保卡", "社保卡", "社保", "医疗保险", "insurance"),
    "体检": ("检查身体", "身体检查", "checkup", "check up", "physical"),
    "空腹": ("吃早饭", "吃早餐", "不吃饭", "禁食", "fasting"),
    "报告": ("结果", "report", "result", "results"),
    "疫苗": ("打针", "接种", "vaccine", "vaccination", "shot", "jab"),
    "流感": ("流感针", "流行性感冒", "flu"),
    "高血压": ("血压高", "高压", "blood pressure", "hypertension"),
    "感冒": ("着凉", "受凉", "cold"),
    "发烧": ("发热", "高烧", "低烧", "fever"),
    "吃药": ("吃啥药", "吃什么药", "用药", "medicine"),
    "线上": ("网上", "在线", "网络", "online"),
    "问诊": ("看病", "问医生", "咨询医生", "看医生", "consult", "consultation"),
    "停车": ("停车位", "车位", "停车场", "停车费", "地方停", "parking"),
    "复诊": ("复查", "回诊", "再来看", "第二次来", "follow up"),
    "病历": ("病例", "病历本", "就诊记录", "medical record"),
    "儿科": ("小孩", "孩子", "宝宝", "儿童", "小朋友", "pediatric", "pediatrics", "kids"),
    # fitness
    "营业时间": ("开门时间", "关门时间", "营业", "开门", "关门", "opening hours", "open", "hours"),
    "办卡": ("办个卡", "开卡", "入会", "办会员", "membership"),
    "私教": ("私人教练", "一对一", "教练", "personal trainer", "trainer"),
    "转让": ("转卡", "转给", "过户", "transfer"),
    "停卡": ("暂停", "冻结", "延期", "停一下", "freeze", "pause"),
    "淋浴": ("洗澡", "冲凉", "浴室", "热水", "shower", "showers"),
    "减脂": ("减肥", "瘦身", "刷脂", "掉秤", "瘦肚子", "lose weight", "fat loss"),
    "有氧": ("跑步", "慢跑", "快走", "cardio"),
    "无氧": ("撸铁", "举铁", "力量训练", "weights", "weight training"),
    "增肌": ("长肌肉", "练大", "muscle", "bulk"),
    "蛋白粉": ("补剂", "protein"),
    "团课": ("操课", "集体课", "瑜伽课", "动感单车", "group class", "classes"),
    "储物柜": ("柜子", "更衣柜", "存包", "locker", "lockers"),
    "新手": ("小白", "新人", "刚开始", "beginner"),
    "体验": ("体验卡", "试练", "trial pass"),
    "健身房": ("健身", "gym"),
}

# Canonical words of the generic intents above: a message made of these alone (几点了? 多少钱?
# 地址呢?) names no topic, so it matches nothing rather than the entry that happens to fit best.
_GENERIC: frozenset[str] = frozenset(
    ("时间", "周日", "周六", "周末", "多久", "价格", "地址", "修改", "预约", "联系", "下载",
     "提交", "免费", "朋友")
)

_STOP_WORDS: frozenset[str] = frozenset(
    """的 了 吗 呢 吧 啊 呀 哦 嘛 么 啦 哈 嗯 哟 噢 呐 咯 喔 诶 哎 我 你 您 他 她 它 我们 你们
    他们 咱 咱们 这 那 这个 那个 这里 那里 这边 请问 问 问下 问一下 一下 下 想 想问 是 是不是
    有 有没有 没有 没 不 要 需要 可以 能 能不能 可不可以 会 会不会 怎么 怎样 如何 咋 咋办
    怎么办 怎么样 啥 什么 哪 哪里 哪儿 哪个 哪些 哪家 多少 几 还是 亲 大家 在 还 都 就 也 和
    跟 给 让 把 被 一 个 得 地 着 过 又 很 太 呗 嘞 滴 吖 该 应该 一般 如果 然后 请 帮 帮忙
    一个 现在 已经 老师 谢谢 好 好的 打算 可 能否 去 来 找 用 做 弄 办 到 去哪 去哪里 家 们
    the a an i you we my your our is are am be do does did can could will would should to of
    for on in at it me us there this that what how where which who why any get have has""".split()
)

_CJK = re.compile(r"[\u4e00-\u9fff]")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def _synonym_regex() -> tuple[re.Pattern[str], dict[str, str]]:
    table: dict[str, str] = {}
    for canon, variants in SYNONYMS.items():
        for v in variants:
            table.setdefault(v, canon)
    parts = []
    for v in sorted(table, key=len, reverse=True):
        if _CJK.search(v):
            parts.append(re.escape(v))
        else:
            parts.append(r"(?<![a-z0-9])" + re.escape(v) + r"(?![a-z0-9])")
    return re.compile("|".join(parts)), table


_SYN_RE, _SYN_TABLE = _synonym_regex()


def _fold_synonyms(norm: str) -> str:
    def repl(m: re.Match[str]) -> str:
        canon = _SYN_TABLE[m.group(0)]
        return canon if _CJK.match(m.group(0)) else f" {canon} "

    return _SPACES.sub(" ", _SYN_RE.sub(repl, norm)).strip()


# --------------------------------------------------------------------------------------------
# segmentation (private jieba tokenizer so run-time words do not leak into other users)
# --------------------------------------------------------------------------------------------

_TOKENIZER: Any = None
_TOKENIZER_LOCK = threading.Lock()
_ADDED_WORDS: set[str] = set()


def _tokenizer() -> Any:
    global _TOKENIZER
    if _TOKENIZER is None:
        with _TOKENIZER_LOCK:
            if _TOKENIZER is None:
                jieba.setLogLevel(60)
                tok = jieba.Tokenizer()
                tok.initialize()
                for canon in SYNONYMS:
                    if _CJK.search(canon):
                        tok.add_word(canon, 2000)
                        _ADDED_WORDS.add(canon)
                _TOKENIZER = tok
    return _TOKENIZER


def _add_domain_word(word: str) -> None:
    if word in _ADDED_WORDS:
        return
    tok = _tokenizer()
    if int(tok.FREQ.get(word, 0)) > 0:
        return
    tok.add_word(word, 1000)
    _ADDED_WORDS.add(word)


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _segment(text: str) -> list[str]:
    """Content words of a synonym-folded text."""
    tok = _tokenizer()
    words: list[str] = []
    for w in tok.cut_for_search(text, HMM=False):
        w = w.strip()
        if not w or w in _STOP_WORDS:
            continue
        if not _CJK.search(w):
            for a in _ASCII_WORD.findall(w):
                if a not in _STOP_WORDS:
                    words.append(_stem(a))
            continue
        words.append(w)
    return words


def _content_string(text: str) -> str:
    """Folded text with stop words removed (the string fuzzy matching and n-grams use)."""
    tok = _tokenizer()
    parts = [w for w in tok.lcut(text, HMM=False) if w.strip() and w not in _STOP_WORDS]
    return "".join(p if _CJK.search(p) else f" {p} " for p in parts).strip()


def _grams(content: str) -> set[str]:
    grams: set[str] = set()
    for run in _CJK_RUN.findall(content):
        grams.update(run)
        grams.update(run[i : i + 2] for i in range(len(run) - 1))
    for a in _ASCII_WORD.findall(content):
        if a not in _STOP_WORDS:
            grams.add(_stem(a))
    return grams


@lru_cache(maxsize=8192)
def _char_pinyin(ch: str) -> str:
    return str(pinyin(ch, style=Style.NORMAL, errors="ignore")[0][0]) if _CJK.match(ch) else ch


def _pinyin_key(word: str) -> str:
    return " ".join(_char_pinyin(c) for c in word)


@lru_cache(maxsize=1)
def _static_vocab() -> dict[str, Counter[str]]:
    """Pinyin -> words of the synonym table (so 讲议 finds 讲义 even if no form says 讲义)."""
    out: dict[str, Counter[str]] = {}
    for canon, variants in SYNONYMS.items():
        for w in (canon, *variants):
            if len(w) >= 2 and _CJK_RUN.fullmatch(w):
                out.setdefault(_pinyin_key(w), Counter())[w] += 1
    return out


# --------------------------------------------------------------------------------------------
# public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaqDoc:
    key: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Match:
    key: str
    score: float
    question: str
    confident: bool
    fair: bool


@dataclass(frozen=True)
class MissGroup:
    representative: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class _Analysis:
    folded: str
    content: str
    words: frozenset[str]
    grams: frozenset[str]
    interrogative: bool


def _analyse(folded: str, interrogative: bool) -> _Analysis:
    content = _content_string(folded)
    return _Analysis(
        folded=folded,
        content=content,
        words=frozenset(_segment(folded)),
        grams=frozenset(_grams(content)),
        interrogative=interrogative,
    )


@dataclass
class _Form:
    fid: int
    key: str
    question: str
    an: _Analysis


@dataclass
class _Features:
    form: _Form
    dice_w: float
    dice_g: float
    qcov_g: float
    qcov_w: float
    fcov_w: float
    fuzz: float
    rank: float = field(default=0.0)
    prior: float = field(default=0.0)

    def vector(self, margin: float, cues: tuple[bool, bool]) -> tuple[float, ...]:
        """Inputs of the calibration, in the order of ``_CAL[1:]``."""
        return (
            self.rank,
            margin,
            float(cues[0]),
            float(cues[1]),
            self.qcov_g,
            self.qcov_w,
            self.fcov_w,
        )


# ranking weights and logistic calibration (fitted by bench/faq_eval.py --fit on the tuning
# half of tests/data/faq_eval.yaml; see that script)
_W_RANK = (0.35, 0.45, 0.20)  # dice_w, dice_g, fuzz
_CAL = (-7.04, 1.96, 3.32, 4.06, -2.72, 2.78, 0.15, 3.01)  # bias, then _Features.vector()
_CANDIDATES = 24
_RARE = 20  # jieba frequency below which a word may be an input typo


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class FaqIndex:
    """In-memory index over all question forms of all entries; add/remove are incremental."""

    def __init__(
        self,
        docs: Iterable[FaqDoc] = (),
        *,
        confident: float = DEFAULT_CONFIDENT,
        fair: float = DEFAULT_FAIR,
    ) -> None:
        if not 0.0 <= fair <= confident <= 1.0:
            raise ValueError("need 0 <= fair <= confident <= 1")
        self.confident = confident
        self.fair = fair
        self._docs: dict[str, FaqDoc] = {}
        self._forms: dict[int, _Form] = {}
        self._by_key: dict[str, list[int]] = {}
        self._wpost: dict[str, set[int]] = {}
        self._gpost: dict[str, set[int]] = {}
        self._vocab: dict[str, Counter[str]] = {}  # pinyin key -> words (with counts)
        self._next = 0
        for d in docs:
            self.add(d)

    # -- maintenance ---------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, key: object) -> bool:
        return key in self._docs

    def get(self, key: str) -> FaqDoc | None:
        return self._docs.get(key)

    def add(self, doc: FaqDoc) -> None:
        """Add (or replace) an entry."""
        if doc.key in self._docs:
            self.remove(doc.key)
        self._docs[doc.key] = doc
        ids: list[int] = []
        for q in doc.questions:
            folded = _fold_synonyms(normalize(q))
            if not folded:
                continue
            self._learn_words(folded)
            an = _analyse(folded, True)
            if not an.words and not an.grams:
                continue
            fid = self._next
            self._next += 1
            form = _Form(fid, doc.key, q, an)
            self._forms[fid] = form
            ids.append(fid)
            for w in an.words:
                self._wpost.setdefault(w, set()).add(fid)
                if len(w) >= 2 and _CJK.search(w):
                    self._vocab.setdefault(_pinyin_key(w), Counter())[w] += 1
            for g in an.grams:
                self._gpost.setdefault(g, set()).add(fid)
        self._by_key[doc.key] = ids

    def update(self, doc: FaqDoc) -> None:
        self.add(doc)

    def remove(self, key: str) -> None:
        self._docs.pop(key, None)
        for fid in self._by_key.pop(key, []):
            form = self._forms.pop(fid)
            for w in form.an.words:
                _discard(self._wpost, w, fid)
                if len(w) >= 2 and _CJK.search(w):
                    pk = _pinyin_key(w)
                    c = self._vocab.get(pk)
                    if c is not None:
                        c[w] -= 1
                        if c[w] <= 0:
                            del c[w]
                        if not c:
                            del self._vocab[pk]
            for g in form.an.grams:
                _discard(self._gpost, g, fid)

    def _learn_words(self, folded: str) -> None:
        """Teach jieba the manager's own words: runs of 2-4 single characters between
        dictionary words in a question form become words."""
        tok = _tokenizer()
        run: list[str] = []
        for w in [*tok.lcut(folded, HMM=False), " "]:
            if len(w) == 1 and _CJK.match(w) and w not in _STOP_WORDS:
                run.append(w)
                continue
            if 2 <= len(run) <= 4:
                _add_domain_word("".join(run))
            run = []

    # -- query ---------------------------------------------------------------------------

    def _repair(self, norm: str) -> str:
        """Replace spans that sound like an index word but are not words themselves (pinyin
        input typos). A span must touch a character jieba could not place in a common word,
        so a real word pair such as 外地|医保 is never read as 第一."""
        tok = _tokenizer()
        weak: list[bool] = []
        for w in tok.lcut(norm, HMM=False):
            rare = len(w) == 1 or int(tok.FREQ.get(w, 0)) < _RARE
            weak.extend([rare] * len(w))
        out: list[str] = []
        i, n = 0, len(norm)
        while i < n:
            replaced = False
            if _CJK.match(norm[i]):
                for size in (4, 3, 2):
                    span = norm[i : i + size]
                    if len(span) < size or not _CJK_RUN.fullmatch(span):
                        continue
                    pk = _pinyin_key(span)
                    cands = self._vocab.get(pk) or _static_vocab().get(pk)
                    if not cands:
                        continue
                    if span in cands:
                        out.append(span)
                        i += size
                        replaced = True
                        break
                    if not any(weak[i : i + size]) or int(tok.FREQ.get(span, 0)) >= _RARE:
                        continue
                    out.append(cands.most_common(1)[0][0])
                    i += size
                    replaced = True
                    break
            if not replaced:
                out.append(norm[i])
                i += 1
        return "".join(out)

    def _idf(self, post: dict[str, set[int]], token: str) -> float:
        n = len(self._forms)
        df = len(post.get(token, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def _score(
        self, text: str, keys: Container[str] | None
    ) -> tuple[list[_Features], tuple[bool, bool]]:
        norm = normalize(text)
        if not norm or not self._forms:
            return [], (False, False)
        interrogative = _interrogative(norm) or bool(_Q_MARK.search(text))
        cues = (interrogative, bool(_STATEMENT.search(norm)) and not interrogative)
        folded = _fold_synonyms(self._repair(norm))
        q = _analyse(folded, interrogative)
        if not q.words and not q.grams:
            return [], cues
        if q.words and q.words <= _GENERIC:
            return [], cues  # "几点了?" "多少钱?" name no topic: any answer would be a guess
        acc: dict[int, float] = {}
        widf = {w: self._idf(self._wpost, w) for w in q.words}
        gidf = {g: self._idf(self._gpost, g) for g in q.grams}
        for w, wt in widf.items():
            for fid in self._wpost.get(w, ()):
                acc[fid] = acc.get(fid, 0.0) + wt
        for g, gt in gidf.items():
            for fid in self._gpost.get(g, ()):
                acc[fid] = acc.get(fid, 0.0) + 0.5 * gt
        if keys is not None:
            acc = {fid: s for fid, s in acc.items() if self._forms[fid].key in keys}
        if not acc:
            return [], cues
        best = sorted(acc, key=acc.__getitem__, reverse=True)[:_CANDIDATES]
        qw = sum(widf.values())
        qg = sum(gidf.values())
        feats: list[_Features] = []
        for fid in best:
            form = self._forms[fid]
            fw = sum(self._idf(self._wpost, w) for w in form.an.words)
            fg = sum(self._idf(self._gpost, g) for g in form.an.grams)
            ow = sum(widf[w] for w in q.words & form.an.words)
            og = sum(gidf[g] for g in q.grams & form.an.grams)
            dice_w = 2 * ow / (qw + fw) if qw + fw else 0.0
            dice_g = 2 * og / (qg + fg) if qg + fg else 0.0
            qcov_g = og / qg if qg else 0.0
            qcov_w = ow / qw if qw else 0.0
            fcov_w = ow / fw if fw else 0.0
            fz = fuzz.ratio(q.content, form.an.content) / 100.0
            f = _Features(form, dice_w, dice_g, qcov_g, qcov_w, fcov_w, fz)
            f.rank = _W_RANK[0] * dice_w + _W_RANK[1] * dice_g + _W_RANK[2] * fz
            f.prior = self._z(f, 0.0, cues)
            feats.append(f)
        feats.sort(key=lambda f: f.prior, reverse=True)
        # one (best) form per entry
        seen: set[str] = set()
        per_entry: list[_Features] = []
        for f in feats:
            if f.form.key not in seen:
                seen.add(f.form.key)
                per_entry.append(f)
        return per_entry, cues

    @staticmethod
    def _z(f: _Features, margin: float, cues: tuple[bool, bool]) -> float:
        return _CAL[0] + sum(b * x for b, x in zip(_CAL[1:], f.vector(margin, cues), strict=True))

    def top(self, text: str, n: int = 3, keys: Container[str] | None = None) -> list[Match]:
        """Best ``n`` entries (one form each), best first, whatever their score."""
        feats, cues = self._score(text, keys)
        out: list[Match] = []
        for i, f in enumerate(feats[:n]):
            nxt = feats[i + 1].rank if i + 1 < len(feats) else 0.0
            margin = max(0.0, f.rank - nxt) if i == 0 else 0.0
            s = _sigmoid(self._z(f, margin, cues))
            out.append(
                Match(
                    key=f.form.key,
                    score=round(s, 4),
                    question=f.form.question,
                    confident=s >= self.confident,
                    fair=s >= self.fair,
                )
            )
        return out

    def match(self, text: str, *, keys: Container[str] | None = None) -> Match | None:
        """Best match among allowed keys, or None when it is not even fair."""
        best = self.top(text, 1, keys)
        if not best or not best[0].fair:
            return None
        return best[0]


def _discard(post: dict[str, set[int]], token: str, fid: int) -> None:
    s = post.get(token)
    if s is None:
        return
    s.discard(fid)
    if not s:
        del post[token]


# --------------------------------------------------------------------------------------------
# grouping misses
# --------------------------------------------------------------------------------------------


def _miss_similarity(a: _Analysis, b: _Analysis) -> float:
    inter = len(a.grams & b.grams)
    tot = len(a.grams) + len(b.grams)
    dice = 2 * inter / tot if tot else 0.0
    return max(dice, fuzz.ratio(a.content, b.content) / 100.0)


def group_misses(texts: Sequence[str], threshold: float = 0.6) -> list[MissGroup]:
    """Group similar unanswered questions; most frequent group first."""
    groups: list[tuple[_Analysis, list[str]]] = []
    for t in texts:
        folded = _fold_synonyms(normalize(t))
        if not folded:
            continue
        an = _analyse(folded, True)
        best_i, best_s = -1, 0.0
        for i, (rep, _) in enumerate(groups):
            s = 1.0 if rep.folded == an.folded else _miss_similarity(rep, an)
            if s > best_s:
                best_i, best_s = i, s
        if best_i >= 0 and best_s >= threshold:
            groups[best_i][1].append(t)
        else:
            groups.append((an, [t]))
    result: list[MissGroup] = []
    for _, members in groups:
        counts = Counter(members)
        examples = tuple(m for m, _ in counts.most_common(3))
        result.append(MissGroup(examples[0], len(members), examples))
    result.sort(key=lambda g: -g.count)
    return result

"""Pure text helpers of the offline memory manager: split user turns into statements, tell
chit-chat from facts, and find the salient terms two statements share (their subject).

Language-aware but model-free: sentences end at ``。．！？.!?`` or a line break; salient terms are
katakana and kanji runs (Japanese nouns: ラーメン, 味噌, 大阪) and Latin words that are not
function words. None of this understands meaning; the embedder does the semantic part.
"""

from __future__ import annotations

import re
import unicodedata

MIN_STATEMENT_CHARS = 3
_SENTENCE_END = re.compile(r"(?<=[。．！？!?])\s*|(?<=[.])\s+|\n+")
_KATAKANA = re.compile(r"[\u30A0-\u30FFー]{2,}")
_KANJI = re.compile(r"[\u4E00-\u9FFF々]{2,}")
_LATIN = re.compile(r"[a-z][a-z'-]{2,}")
_STOP = frozenset(
    " ".join(
        (
            "the and but for with that this these those there their they them then than you your yours",
            "i'm i've i'd i'll me my mine myself we our ours us its it's is are was were be been being",
            "am have has had having do does did doing done not no yes very really just also too so",
            "such what which who whom whose when where why how all any some many much more most other",
            "own same can could would should will shall may might must now still ever never always",
            "often usually about into onto over under again once here only like likes liked love loves",
            "loved enjoy prefer prefers want wants wanted get got gets make made going gone come came",
            "lot lots thing things something anything everything nothing one ones today yesterday",
            "tomorrow these week since from after before because while until well okay sure thanks",
            "thank hello please",
        )
    ).split()
)
_STOP_JA = frozenset({"大好", "本当", "今日", "明日", "昨日", "最近", "毎日", "一番", "今度", "自分", "全部", "時々"})
CHITCHAT_PROTOTYPES = (
    "hi",
    "hello there",
    "thanks a lot",
    "ok, sounds good",
    "bye, see you",
    "lol that's funny",
    "how are you?",
    "good morning",
    "こんにちは",
    "ありがとう",
    "了解です",
    "またね",
    "おはようございます",
    "なるほど",
    "すごいですね",
)
"""Greetings, thanks and acknowledgements: what "nothing worth remembering" sounds like."""


RETRACTION_CUES = (
    # Japanese: dislike, stopped, quit, no longer (…ない after もう)
    "嫌いになり",
    "嫌いになった",
    "苦手になり",
    "やめました",
    "やめた",
    "辞めました",
    "辞めた",
    "もう好きじゃない",
    "もう飼って",
    "もう住んで",
    "もう吸って",
    "もう食べて",
    # English
    "no longer",
    "not anymore",
    "don't like",
    "do not like",
    "don't eat",
    "stopped",
    "i quit",
    "gave up",
    "not any more",
    "dislike",
    "i hate",
)
"""Phrases that take back an earlier statement on the same subject ("I no longer…", 「…をやめた」)."""


def is_retraction(statement: str) -> bool:
    """Whether a statement takes back something (to delete the memory it is about, if allowed)."""
    text = normalise(statement).casefold()
    return any(cue in text for cue in RETRACTION_CUES)


def normalise(text: str) -> str:
    """NFKC, trimmed, inner whitespace folded (ｆｕｌｌ-width and half-width agree)."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def statements(text: str) -> list[str]:
    """The sentences of one user turn, each stripped; fragments too short to state a fact dropped."""
    parts = (normalise(p) for p in _SENTENCE_END.split(normalise(text)))
    return [p for p in parts if len(p) >= MIN_STATEMENT_CHARS]


def is_question(statement: str) -> bool:
    """A question asks the assistant something; it states no fact about the user."""
    return statement.rstrip().endswith(("?", "？"))


def salient_terms(text: str) -> set[str]:
    """Content terms: katakana/kanji runs and non-function Latin words, casefolded."""
    text = normalise(text)
    terms = {m for m in _KATAKANA.findall(text) if m.strip("ー")}
    terms |= {m for m in _KANJI.findall(text) if m not in _STOP_JA}
    terms |= {w.strip("'-") for w in _LATIN.findall(text.casefold()) if w not in _STOP}
    return {t for t in terms if len(t) >= 2}


def share_subject_term(a: str, b: str) -> bool:
    """Whether two statements share a salient term (for Latin words, a common stem of 4+)."""
    ta, tb = salient_terms(a), salient_terms(b)
    if ta & tb:
        return True
    latin_a = {t for t in ta if t.isascii() and len(t) >= 4}
    latin_b = {t for t in tb if t.isascii() and len(t) >= 4}
    return any(x[:4] == y[:4] and (x.startswith(y) or y.startswith(x)) for x in latin_a for y in latin_b)

"""LoCoMo under the mem0 paper's protocol (``reverie eval --locomo``), end to end on the real
pipeline (producer, Celery worker, local Qdrant, Redis) with the scripted model standing in for
extraction, answering and judging; and the pure parts (format, messages, prompts, verdicts, J)
on known inputs. The file is a tiny one in LoCoMo's format, written here: the dataset is not
shipped (CC BY-NC)."""

from __future__ import annotations

import copy
import io
import json
import re
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner

from schemas.ids import check_id
from schemas.settings import Settings
from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import Reply, text_reply
from worker.ops.cli import cli
from worker.ops.eval.harness import harness
from worker.ops.eval.locomo import LocomoRun, render
from worker.ops.eval.locomo_protocol import (
    PROFILE,
    SIDES,
    Graded,
    LocomoFormatError,
    Turn,
    answer_messages,
    j_scores,
    judge_messages,
    memory_lines,
    message_id,
    parse_locomo,
    parse_verdict,
    session_messages,
    submit_chunks,
)

DATE_1, DATE_2 = "1:56 pm on 8 May, 2023", "10:04 am on 20 June, 2023"
TINY: list[dict[str, Any]] = [
    {
        "sample_id": "tiny-1",
        "conversation": {
            "speaker_a": "Alice",
            "speaker_b": "Bob",
            "session_1_date_time": DATE_1,
            "session_1": [
                {"speaker": "Alice", "dia_id": "D1:1", "text": "I moved to Osaka last week"},
                {
                    "speaker": "Bob",
                    "dia_id": "D1:2",
                    "text": "My dog Rex loves the park",
                    "img_url": ["https://example.invalid/rex.jpg"],
                    "blip_caption": "a photo of a dog on the grass",
                    "query": "dog park",
                },
                {"speaker": "Alice", "dia_id": "D1:3", "text": "I go hiking every Sunday"},
            ],
            "session_2_date_time": DATE_2,
            "session_2": [
                {"speaker": "Bob", "dia_id": "D2:1", "text": "I went hiking with Rex yesterday"},
                {"speaker": "Alice", "dia_id": "D2:2", "text": "I started learning the cello"},
            ],
        },
        "qa": [
            {"question": "What do Alice and Bob both enjoy?", "answer": "hiking", "evidence": ["D1:3"], "category": 1},
            {"question": "When did Alice move to Osaka?", "answer": "The week before 8 May 2023", "category": 2},
            {"question": "What is the name of Bob's dog?", "answer": "Rex", "evidence": ["D1:2"], "category": 4},
            {"question": "What is Alice's dog called?", "adversarial_answer": "Rex", "evidence": [], "category": 5},
        ],
        "event_summary": {"ignored": True},
    }
]
USER_TURNS = {
    "a": ["I go hiking every Sunday", "I moved to Osaka last week", "I started learning the cello"],
    "b": ["I went hiking with Rex yesterday", "My dog Rex loves the park [shares a photo of a dog on the grass]"],
}
ANSWERS = {  # the scripted answerer: right, wrong, right
    "What do Alice and Bob both enjoy?": "Hiking",
    "When did Alice move to Osaka?": "June 2024",
    "What is the name of Bob's dog?": "Rex",
}
QUESTION = re.compile(r"^Question: (.*)$", re.M)
GOLD, CHECKED = re.compile(r"^Gold answer: (.*)$", re.M), re.compile(r"^Answer to check: (.*)$", re.M)


def user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def locomo_model(body: dict[str, Any]) -> Reply:
    """Extraction (a request with tools) stores each user turn; answering (the prompt ends with
    "Short answer:") looks the question up in ANSWERS; judging (it shows a "Gold answer:") says
    CORRECT when the answer is contained in the gold one, in JSON, and WRONG as a bare word."""
    if body.get("tools"):
        return insert_each_user_turn(body)
    text = user_text(body)
    if (gold := GOLD.search(text)) and (answer := CHECKED.search(text)):
        right = answer[1].casefold() in gold[1].casefold()
        return text_reply('{"label": "CORRECT"}' if right else "WRONG")
    if text.endswith("Short answer:") and (question := QUESTION.search(text)):
        return text_reply(ANSWERS.get(question[1], "I don't know"))
    return text_reply("unexpected request")


def requests(scripted: Any, kind: str) -> list[str]:
    bodies = scripted.chat_requests
    if kind == "extract":
        return [user_text(b) for b in bodies if b.get("tools")]
    marker = "Gold answer:" if kind == "judge" else "Short answer:"
    return [user_text(b) for b in bodies if not b.get("tools") and marker in user_text(b)]


def settings_for(redis_url: str, scripted: Any) -> Settings:
    return Settings(
        redis_url=SecretStr(redis_url), model=scripted.model, llm_api_base=scripted.base_url, llm_api_key="sk-test"
    )


EXPECTED_OVERALL = {"j": 0.667, "correct": 2, "questions": 3, "skipped_adversarial": 1, "unparsed_verdicts": 0}
EXPECTED_J = {"multi-hop": 1.0, "temporal": 0.0, "open-domain": None, "single-hop": 1.0}


@pytest.mark.timeout(180)
def test_the_protocol_goes_through_submit_and_scores_what_the_judge_said(own_process, scripted, redis_url) -> None:
    """Two users per conversation, one memory per user turn in each; category 5 never asked;
    the answering prompt carries both speakers' memories, dated; J is 2 of 3 as judged."""
    if not own_process:
        return  # ran, and passed, in a process of its own (see the own_process fixture)
    scripted.set_responder(locomo_model)
    samples = parse_locomo(TINY)
    with harness(settings_for(redis_url, scripted), [PROFILE]) as h:
        run = LocomoRun(h, samples, top_k=10).run()
        report = run.report(source="tiny")
        stored = {side: sorted(m.content for m in h.runtime.store.list(run.users[0][side])) for side in SIDES}
    assert report["meta"]["errors"] == []
    assert stored == USER_TURNS
    assert report["meta"]["memories"] == 5
    assert report["overall"] == EXPECTED_OVERALL
    assert {name: c["j"] for name, c in report["categories"].items()} == EXPECTED_J
    assert report["categories"]["temporal"] == {"category": 2, "j": 0.0, "correct": 0, "questions": 1}
    assert [(q["category"], q["correct"]) for q in report["questions"]] == [(1, True), (2, False), (4, True)]
    assert not any("Alice's dog" in user_text(b) for b in scripted.chat_requests)

    extractions = requests(scripted, "extract")
    assert len(extractions) == 4 and report["usage"]["ingestion"]["llm_calls"] == 4
    [alice_1] = [e for e in extractions if "The user is Alice" in e and DATE_1 in e]
    assert (
        f"system: This conversation took place on {DATE_1}. The user is Alice; the assistant is Bob.\n"
        "user: I moved to Osaka last week\n"
        "assistant: My dog Rex loves the park [shares a photo of a dog on the grass]\n"
        "user: I go hiking every Sunday\n"
    ) in alice_1
    [alice_2] = [e for e in extractions if "The user is Alice" in e and DATE_2 in e]
    assert "I moved to Osaka last week" in alice_2.split("<conversation>")[0]  # session 1 already committed

    answers = requests(scripted, "answer")
    assert len(answers) == 3 and report["usage"]["answering"]["llm_calls"] == 3
    [dog] = [a for a in answers if "Bob's dog" in a]
    alice, bob = dog.split("Memories of Bob:")
    assert "Memories of Alice:" in alice and f"- [{DATE_1}] I moved to Osaka last week" in alice
    assert f"- [{DATE_2}] I started learning the cello" in alice and "Rex" not in alice
    assert f"- [{DATE_1}] My dog Rex loves the park" in bob and "Osaka" not in bob
    assert len(requests(scripted, "judge")) == 3 and report["usage"]["judging"]["llm_calls"] == 3
    assert report["usage"]["answering"]["tokens"] > 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("as_json", [False, True])
def test_the_command_prints_the_table_or_json_and_writes_the_json(
    own_process, scripted, redis_url, tmp_path, as_json
) -> None:
    """``reverie eval --locomo FILE --model M --out F``: the table fits 80 columns and shows the
    published figures beside ours (``--json``: the report itself); the file has the same scores."""
    if not own_process:
        return  # ran, and passed, in a process of its own
    scripted.set_responder(locomo_model)
    path, out = tmp_path / "locomo-tiny.json", tmp_path / "report.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    env = {
        "REDIS_URL": redis_url,
        "REVERIE_LLM_API_BASE": scripted.base_url,
        "REVERIE_LLM_API_KEY": "sk-test",
        "REVERIE_LOG_LEVEL": "WARNING",
    }
    args = ["eval", "--locomo", str(path), "--model", scripted.model, "--top-k", "5", "--out", str(out)]
    done = CliRunner().invoke(cli, args + (["--json"] if as_json else []), env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["overall"] == EXPECTED_OVERALL and report["meta"]["top_k"] == 5
    assert report["meta"]["judge"] == scripted.model and report["published"]["j"]["Mem0"] == 0.669
    assert "Osaka" not in out.read_text(encoding="utf-8")  # ids and counts, no conversation text
    if as_json:
        assert json.loads(done.stdout) == report
        return
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    for shown in ("66.7", "100.0", "72.9", "66.9", "66.0", "58.1", "multi-hop", "open-domain", "Reverie (this run)"):
        assert shown in done.stdout


def test_without_a_model_or_with_a_bad_file_the_command_refuses(tmp_path) -> None:
    """Nothing starts: one error line, exit 2. The format error names the sample and the field."""
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(TINY), encoding="utf-8")
    runner = CliRunner()
    no_model = runner.invoke(cli, ["eval", "--locomo", str(path)], env={"REVERIE_MODEL": None})
    assert no_model.exit_code == 2 and "LoCoMo needs a model" in no_model.stderr
    broken = copy.deepcopy(TINY)
    del broken[0]["qa"][1]["question"]
    path.write_text(json.dumps(broken), encoding="utf-8")
    bad = runner.invoke(cli, ["eval", "--locomo", str(path), "--model", "openai/any"])
    assert bad.exit_code == 2 and "sample tiny-1: qa[1].question: Field required" in bad.stderr


# -- the pure parts ------------------------------------------------------------------------------


def test_parsing_orders_sessions_and_reads_answers_given_as_numbers() -> None:
    data = copy.deepcopy(TINY)
    conv = data[0]["conversation"]
    conv["session_10"] = [{"speaker": "Bob", "dia_id": "D10:1", "text": "late"}]  # no date: allowed
    data[0]["qa"].append({"question": "Which year?", "answer": 2022, "category": 3})
    [sample] = parse_locomo(data)
    assert [(s.number, s.date) for s in sample.sessions] == [(1, DATE_1), (2, DATE_2), (10, None)]
    assert sample.qa[-1].answer == "2022" and sample.qa[3].answer is None  # category 5 needs none
    assert sample.sessions[0].turns[1].blip_caption == "a photo of a dog on the grass"


def _broken(change: Any) -> Any:
    data = copy.deepcopy(TINY)
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sample_id": "x"}, "LoCoMo file: expected a JSON list of samples, got dict"),
        ([], "expected a JSON list of samples, got an empty list"),
        (["text"], "sample #0: expected an object, got str"),
        (_broken(lambda d: d[0]["conversation"].pop("speaker_b")), "sample tiny-1: conversation.speaker_b: Field"),
        (_broken(lambda d: d[0].pop("conversation")), "sample tiny-1: conversation: Field required"),
        (_broken(lambda d: d[0]["conversation"].update(session_2="hello")), "conversation.session_2: expected a list"),
        (_broken(lambda d: d[0]["conversation"]["session_1"][1].pop("dia_id")), "session_1[1].dia_id: Field required"),
        (_broken(lambda d: d[0]["conversation"]["session_2"][0].update(speaker="Eve")), "session_2[0].speaker: neith"),
        (_broken(lambda d: d[0]["qa"][2].pop("question")), "sample tiny-1: qa[2].question: Field required"),
        (_broken(lambda d: d[0]["qa"][0].pop("answer")), "sample tiny-1: qa[0]: Value error, answer is required"),
        (_broken(lambda d: d[0]["qa"][0].update(category=7)), "sample tiny-1: qa[0].category: Input should be"),
        (_broken(lambda d: d[0]["conversation"].update(speaker_b="Alice")), "conversation.speaker_b: must differ"),
        (_broken(lambda d: d[0].pop("sample_id")), "sample #0: sample_id: Field required"),
    ],
)
def test_bad_input_is_refused_naming_the_sample_and_the_field(data, message) -> None:
    with pytest.raises(LocomoFormatError) as caught:
        parse_locomo(data)
    assert isinstance(caught.value, ValueError) and message in str(caught.value)
    assert "Osaka" not in str(caught.value)  # no conversation text in errors


def test_each_speaker_sees_their_own_turns_as_user_after_the_date() -> None:
    [sample] = parse_locomo(TINY)
    session = sample.sessions[0]
    alice, bob = (session_messages(sample, session, side) for side in SIDES)
    assert alice[0] == {
        "role": "system",
        "content": f"This conversation took place on {DATE_1}. The user is Alice; the assistant is Bob.",
        "id": "S1-date-a",
    }
    assert [m["role"] for m in alice] == ["system", "user", "assistant", "user"]
    assert [m["role"] for m in bob] == ["system", "assistant", "user", "assistant"]
    assert [m["id"] for m in alice[1:]] == ["D1-1-a", "D1-2-a", "D1-3-a"]
    assert [m["id"] for m in bob[1:]] == ["D1-1-b", "D1-2-b", "D1-3-b"]
    assert alice[2]["content"] == bob[2]["content"] == USER_TURNS["b"][1]
    assert "The user is Bob; the assistant is Alice." in bob[0]["content"]


def test_message_ids_are_producer_safe_and_unique_in_a_session() -> None:
    assert message_id("D1:3", "a") == "D1-3-a"
    for odd in (":D1::3", "D 4:5*", "{x}", "::"):
        check_id(message_id(odd, "b"))
    [sample] = parse_locomo(TINY)
    session = sample.sessions[0].model_copy(update={"turns": [Turn(speaker="Alice", dia_id="D1:1", text="x")] * 3})
    ids = [m["id"] for m in session_messages(sample, session, "a")]
    assert ids == ["S1-date-a", "D1-1-a", "D1-1-1-a", "D1-1-2-a"]


def test_a_session_is_split_only_beyond_the_producers_limits() -> None:
    messages = [{"role": "user", "content": f"turn {i}", "id": f"m{i}"} for i in range(450)]
    assert [len(p) for p in submit_chunks(messages)] == [200, 200, 50]
    assert [len(p) for p in submit_chunks(messages[:30])] == [30]
    big = [{"role": "user", "content": "x" * 300, "id": f"b{i}"} for i in range(10)]
    parts = submit_chunks(big, max_bytes=1000)
    assert [len(p) for p in parts] == [3, 3, 3, 1] and [m for p in parts for m in p] == big


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ('{"label": "CORRECT"}', True),
        ('```json\n{"label": "wrong"}\n```', False),
        ("CORRECT", True),
        ("WRONG", False),
        ("correct.", True),
        ("INCORRECT", False),
        ("The answer is not correct.", False),
        ("It names a different city, which is wrong... on reflection the label is CORRECT", True),
        ('{"reason": "same day"} CORRECT', True),
        ("", None),
        ("I cannot tell", None),
    ],
)
def test_verdicts_are_read_from_json_or_the_last_verdict_word(reply, verdict) -> None:
    assert parse_verdict(reply) is verdict


def test_j_is_the_share_judged_correct_overall_and_per_category() -> None:
    graded = [Graded("s", i, c, ok) for i, (c, ok) in enumerate([(1, True), (1, False), (2, True), (4, False)])]
    scores = j_scores(graded)
    assert scores["overall"] == {"j": 0.5, "correct": 2, "questions": 4}
    assert {n: c["j"] for n, c in scores["categories"].items()} == {
        "multi-hop": 0.5,
        "temporal": 1.0,
        "open-domain": None,
        "single-hop": 0.0,
    }
    assert scores["categories"]["open-domain"] == {"category": 3, "j": None, "correct": 0, "questions": 0}


def test_the_prompts_label_memories_by_speaker_and_date_and_show_the_gold_answer() -> None:
    from datetime import UTC, datetime

    from schemas.memory import MemoryRecord, MemorySource

    now = datetime.now(UTC)
    record = MemoryRecord(
        id="1", user_id="u", namespace="n", content="Alice moved to Osaka", created_at=now, updated_at=now
    )
    dated = record.model_copy(update={"source": MemorySource(thread_id="session-1")})
    assert memory_lines([dated, record], {"session-1": DATE_1}) == [f"[{DATE_1}] Alice moved to Osaka", record.content]
    messages = answer_messages("Where does Alice live?", [("Alice", ["lives in Osaka"]), ("Bob", [])])
    assert messages[0]["role"] == "system" and "few words" in messages[0]["content"]
    assert messages[1]["content"] == (
        "Memories of Alice:\n- lives in Osaka\n\nMemories of Bob:\n- (none)\n\n"
        "Question: Where does Alice live?\nShort answer:"
    )
    judged = judge_messages("Where?", "Osaka", "")
    assert "generous" in judged[0]["content"] and '{"label": "CORRECT"}' in judged[0]["content"]
    assert judged[1]["content"] == "Question: Where?\nGold answer: Osaka\nAnswer to check: (no answer)"


def test_the_table_fits_80_columns_with_the_published_scores_beside_ours() -> None:
    scores = j_scores([Graded("s", 0, 1, True), Graded("s", 1, 4, False), Graded("s", 2, 2, True)])
    report = {
        "meta": {
            "model": "openai/gpt-4o-mini",
            "judge": "openai/gpt-4o-mini",
            "extractor": "llm:openai/gpt-4o-mini",
            "embedder": "use-m3",
            "top_k": 10,
            "conversations": 10,
            "memories": 4321,
            "seconds": {"ingest": 1234.5, "answer": 321.0, "total": 1555.5},
            "errors": ["conv-26 session 3 speaker a: dead_lettered"],
        },
        "overall": scores["overall"] | {"skipped_adversarial": 446, "unparsed_verdicts": 2},
        "categories": scores["categories"],
        "usage": {p: {"llm_calls": 1540, "tokens": 12_345_678} for p in ("ingestion", "answering", "judging")},
    }
    buffer = io.StringIO()
    render(report, Console(file=buffer, width=80, color_system=None))
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    [row] = [line for line in lines if "overall" in line]
    assert "66.7" in row and "Reverie (this run)" in row  # our overall J on the line of the comparison
    text = buffer.getvalue()
    for shown in ("Mem0", "66.9", "Zep", "66.0", "LangMem", "58.1", "12,345,678", "dead_lettered", "2 verdicts"):
        assert shown in text

"""The eval's scenario format: YAML files, each a list of scenarios (documented in README
"Quality"). Users add their own with ``reverie eval --scenarios DIR``.

A scenario is a profile, sessions reflected one after another, the complete expected memory
state of every user after each session (as checks), stale facts that must be gone, and
retrieval questions answered by one expected memory of the final state. A session may also
carry ``parallel`` threads of the same user, submitted right after its own turns (in the listed
order) and falling due with them: the chat in several tabs at once that sibling-thread joining
is for. Its checks hold once every one of its threads is reflected.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Category = Literal[
    "new_facts",
    "update",
    "delete",
    "dedupe",
    "temporal",
    "chitchat",
    "multilingual",
    "structured",
    "isolation",
    "siblings",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]
Mention = str | list[str]


class EvalFormatError(ValueError):
    """A scenario file does not follow the format; names the file, the scenario and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCheck(_Model):
    """Exact checks on one field of a structured memory (all given ones must hold)."""

    eq: Any = None
    contains: str | list[str] | None = None
    """A substring, or alternatives (any one)."""
    one_of: list[Any] | None = None
    gte: float | None = None
    lte: float | None = None
    gt: float | None = None
    lt: float | None = None

    @model_validator(mode="after")
    def _some(self) -> FieldCheck:
        if not self.model_fields_set:
            raise ValueError("a field check needs at least one of eq, contains, one_of, gte, lte, gt, lt")
        return self


class Check(_Model):
    """What a memory must say. ``mentions``: every item must appear in it (an item that is a list
    is alternatives); ``text``: the fact in words, for the judge; ``fields``/``schema``: exact."""

    user: str = Field(default="user", pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")
    text: str | None = None
    mentions: list[Mention] = Field(default_factory=list)
    excludes: list[str] = Field(default_factory=list)
    """None of these may appear (e.g. "moved from Osaka" is not "lives in Osaka")."""
    fields: dict[str, FieldCheck] = Field(default_factory=dict)
    schema_name: str | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _checkable(self) -> Check:
        if not (self.mentions or self.fields):
            raise ValueError("give mentions or fields: a check must be decidable without a model")
        if self.mentions and not self.text:
            raise ValueError("mentions need the fact in words (text) for the LLM judge")
        return self


class Expect(Check):
    """One memory the user should have after the session."""

    key: str = Field(min_length=1, max_length=60)
    same_as: str | None = None
    """Key of an expectation of an earlier session: this must be that memory, updated in place."""


class Turn(_Model):
    role: Literal["user", "assistant"] = "user"
    content: str = Field(min_length=1, max_length=4000)


class Session(_Model):
    user: str = Field(default="user", pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")
    turns: list[Turn] = Field(min_length=1)
    expect: list[Expect] = Field(default_factory=list)
    """The complete expected state of every user of the scenario after this session."""
    absent: list[Check] = Field(default_factory=list)
    """Stale or leaked facts: no memory of that user may pass these checks."""
    parallel: list[list[Turn]] = Field(default_factory=list, max_length=8)
    """Other threads of this user, submitted together with ``turns`` (each one thread, in order)."""

    @field_validator("turns", mode="before")
    @classmethod
    def _turns(cls, value: Any) -> Any:
        return _bare_user_turns(value)

    @field_validator("parallel", mode="before")
    @classmethod
    def _parallel(cls, value: Any) -> Any:
        return [_bare_user_turns(t) for t in value] if isinstance(value, list) else value

    @field_validator("parallel")
    @classmethod
    def _not_empty(cls, value: list[list[Turn]]) -> list[list[Turn]]:
        if any(not turns for turns in value):
            raise ValueError("a parallel thread needs at least one turn")
        return value

    @property
    def threads(self) -> list[list[Turn]]:
        """The session's own turns, then each parallel thread's: the submit order."""
        return [self.turns, *self.parallel]


def _bare_user_turns(value: Any) -> Any:
    """Shorthand: a bare string is a user turn."""
    return [{"content": t} if isinstance(t, str) else t for t in value] if isinstance(value, list) else value


class Question(_Model):
    user: str = Field(default="user", pattern=r"^[a-z0-9][a-z0-9-]{0,19}$")
    ask: str = Field(min_length=1)
    answer: str
    """Key of the expected memory (final session) that answers it."""


class ProfileSpec(_Model):
    schemas: list[str] = Field(default_factory=lambda: ["Memory"], min_length=1)
    instructions: str | None = None
    enable_inserts: bool = True
    enable_updates: bool = True
    enable_deletes: bool = False
    delete_mode: Literal["physical", "tombstone"] = "physical"


class Scenario(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,62}$")
    category: Category
    language: Literal["ja", "en", "mixed"]
    description: str = ""
    profile: ProfileSpec = Field(default_factory=ProfileSpec)
    sessions: list[Session] = Field(min_length=1)
    questions: list[Question] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        seen: set[tuple[str, str]] = set()
        for n, session in enumerate(self.sessions):
            keys = [(e.user, e.key) for e in session.expect]
            if len(set(keys)) != len(keys):
                raise ValueError(f"sessions[{n}]: a user's expectation keys repeat")
            for e in session.expect:
                if e.same_as is not None and (e.user, e.same_as) not in seen:
                    raise ValueError(
                        f"sessions[{n}].{e.key}: same_as {e.same_as!r} names no earlier expectation of {e.user!r}"
                    )
            seen |= set(keys)
        final = {(e.user, e.key) for e in self.sessions[-1].expect}
        for q in self.questions:
            if (q.user, q.answer) not in final:
                raise ValueError(f"question {q.ask!r}: answer {q.answer!r} is not a final expectation of {q.user!r}")
        return self

    @property
    def users(self) -> list[str]:
        names = [s.user for s in self.sessions]
        names += [e.user for s in self.sessions for e in [*s.expect, *s.absent]]
        names += [q.user for q in self.questions]
        return list(dict.fromkeys(names))


def shipped_dir() -> Path:
    """The scenarios that ship with Reverie."""
    return Path(str(files("worker.ops.eval").joinpath("scenarios")))


def parse_file(path: Path) -> list[Scenario]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EvalFormatError(f"{path}: cannot read YAML ({type(e).__name__}: {str(e)[:200]})") from None
    items = raw.get("scenarios") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise EvalFormatError(f"{path}: expected a list of scenarios (or a mapping with 'scenarios')")
    out = []
    for n, item in enumerate(items):
        name = item.get("id", f"#{n}") if isinstance(item, dict) else f"#{n}"
        try:
            out.append(Scenario.model_validate(item))
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'scenario'}: {err['msg']}"
                for err in e.errors(include_url=False, include_input=False)
            )
            raise EvalFormatError(f"{path}: scenario {name}: {problems}") from None
    return out


def load_scenarios(dirs: Iterable[Path] | None = None, *, categories: Iterable[str] | None = None) -> list[Scenario]:
    """Every scenario of ``*.yaml`` files in ``dirs`` (default: the shipped ones), ids unique."""
    wanted = set(categories or CATEGORIES)
    unknown = wanted - set(CATEGORIES)
    if unknown:
        raise EvalFormatError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
    scenarios: list[Scenario] = []
    for folder in list(dirs or [shipped_dir()]):
        if not folder.is_dir():
            raise EvalFormatError(f"{folder}: not a folder of scenario files")
        paths = sorted(folder.glob("*.yaml"))
        if not paths:
            raise EvalFormatError(f"{folder}: no *.yaml scenario files")
        for path in paths:
            scenarios.extend(parse_file(path))
    ids = [s.id for s in scenarios]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise EvalFormatError(f"scenario ids repeat: {dupes}")
    return [s for s in scenarios if s.category in wanted]

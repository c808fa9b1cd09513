"""Joint reflection of sibling threads: when a user's lease is won, the user's other threads whose
quiet period is also over are reflected in the same run, with one LLM call and one commit,
instead of waiting for the lease one after another (each a model call long).

Per-user serialisation is unchanged: everything happens under the one lease. Each sibling gets
its own journal (a commit plan with no ops that trims its turns), journaled in the same PREPARE
call as the reflected thread's plan, which carries every op. A crash replays each journal on its
own, as for any reflection. The turns are merged in the order they were submitted, so the newest
statement across threads is the last one the extractor reads."""

from __future__ import annotations

from dataclasses import dataclass

from producer.keys import member
from producer.text import as_text
from schemas.messages import BufferedTurn
from schemas.profiles import Profile
from schemas.reflection import CommitPlan
from worker.pipeline.coordinator import Coordinator, decode_turn

MAX_CANDIDATES = 256
"""Threads of the user looked at per joint reflection (the thread index can be longer)."""


@dataclass(frozen=True, slots=True)
class Sibling:
    thread_id: str
    generation: int
    turns: list[BufferedTurn]


def joinable(profile: Profile) -> bool:
    """Threads of this profile can be reflected together: their memories share one namespace and
    no memory is tied to one thread (an episode memory is: one per thread)."""
    return not profile.episodic and not any("{thread_id}" in part for part in profile.namespace)


def snapshot_siblings(
    coordinator: Coordinator, user_id: str, thread_id: str, profile: str, *, budget: int, most: int
) -> list[Sibling]:
    """The user's other threads that are due too (see ``lua/siblings.lua``), with their turns.
    Call under the user's lease. Two round trips: the thread index, then the snapshot."""
    if most <= 0 or budget <= 0:
        return []
    keys = coordinator.keys
    others = sorted(as_text(t) for t in coordinator.r.smembers(keys.user_threads(user_id)) if as_text(t) != thread_id)
    others = others[:MAX_CANDIDATES]
    if not others:
        return []
    shard = keys.shard_for(user_id)
    script_keys = [shard.due_ss, shard.dlq]
    for t in others:
        script_keys += [keys.thread(user_id, t), keys.buffer(user_id, t), keys.journal(user_id, t)]
    reply = coordinator.scripts.siblings(
        keys=script_keys, args=[budget, profile, most, *(member(user_id, t) for t in others)]
    )
    out: list[Sibling] = []
    i = 0
    while i < len(reply):
        index, generation, count = int(reply[i]), int(reply[i + 1]), int(reply[i + 2])
        turns = [decode_turn(raw) for raw in reply[i + 3 : i + 3 + count]]
        out.append(Sibling(others[index - 1], generation, turns))
        i += 3 + count
    return out


def merged(thread_id: str, turns: list[BufferedTurn], siblings: list[Sibling]) -> list[BufferedTurn]:
    """All turns in submit order (stable: a thread's own order is kept on equal times), each
    marked with its thread so that the prompt can say which chat it belongs to."""
    if not siblings:
        return turns
    tagged = [x.model_copy(update={"thread": thread_id}) for x in turns]
    tagged += [x.model_copy(update={"thread": s.thread_id}) for s in siblings for x in s.turns]
    return sorted(tagged, key=lambda x: x.ts_ms)


def sibling_plans(plan: CommitPlan, siblings: list[Sibling]) -> list[CommitPlan]:
    """One journal per sibling: no ops (the reflected thread's plan carries them all), the turns
    it consumed, so that finalizing it trims exactly those."""
    return [
        CommitPlan(
            user_id=plan.user_id,
            thread_id=s.thread_id,
            generation=s.generation,
            turn_count=len(s.turns),
            turn_ids=[x.id for x in s.turns if x.id],
            namespace=plan.namespace,
            ops=[],
            created_ms=plan.created_ms,
            extractor=plan.extractor,
        )
        for s in siblings
    ]

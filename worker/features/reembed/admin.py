"""``--drop-old`` and ``--abort``: the two ways a re-embed's collections are removed, both under
the namespace's lock, both refusing to touch the live collection."""

from __future__ import annotations

from schemas.reembed import ReembedReport
from worker.features.reembed.checkpoint import Checkpoint, load_state, old_collections
from worker.features.reembed.errors import ReembedRefused
from worker.features.reembed.run import Context


def kept_old(ctx: Context) -> list[str]:
    """The collections ``--drop-old`` would drop (``--dry-run`` shows them)."""
    return old_collections(ctx.redis, ctx.keys, ctx.settings.namespace)


def drop_old(ctx: Context) -> ReembedReport:
    """Drop the collections finished re-embeds switched away from. Refused while a re-embed is
    unfinished, and for the collection the live alias names (a re-embed back to it)."""
    live = ctx.store.live
    if live is None:
        raise ReembedRefused("REVERIE_COLLECTION_STRATEGY=per_user has no re-embedded collections to drop")
    with Checkpoint(ctx.redis, ctx.keys, ctx.settings.namespace) as cp:
        state = cp.load()
        if state is not None:
            raise ReembedRefused(
                f"a re-embed to {state.target_model!r} is unfinished (phase {state.phase}): finish it "
                f"(`reverie reembed --to {state.target_model}`) or `--abort` it first"
            )
        names = kept_old(ctx)
        if not names:
            raise ReembedRefused("no old collection is kept: nothing to drop (a finished re-embed keeps its old one)")
        current = live.target() or live.default.collection
        if current in names:
            raise ReembedRefused(f"{current} is the live collection: it is not dropped")
        for name in names:
            ctx.store._call(ctx.store.client.delete_collection, name)
            ctx.store._known.discard(name)
        cp.forget_old(names)
    return ReembedReport(phase="dropped", dropped=names)


def abort(ctx: Context) -> ReembedReport:
    """Discard an unfinished re-embed before its switch: drop the new collection and the checkpoint."""
    live = ctx.store.live
    state = load_state(ctx.redis, ctx.keys, ctx.settings.namespace)
    if live is None or state is None:
        raise ReembedRefused("no unfinished re-embed to abort")
    with Checkpoint(ctx.redis, ctx.keys, ctx.settings.namespace) as cp:
        state = cp.load()
        if state is None:
            raise ReembedRefused("no unfinished re-embed to abort")
        if live.target() == state.target:
            raise ReembedRefused(
                f"the re-embed to {state.target_model!r} has switched the live alias already: finish it "
                f"(`reverie reembed --to {state.target_model}`); re-embed back to change the model again"
            )
        if ctx.store._call(ctx.store.client.collection_exists, state.target):
            ctx.store._call(ctx.store.client.delete_collection, state.target)
        ctx.store._known.discard(state.target)
        cp.save(None)
    return ReembedReport(phase="aborted", source=state.source, target=state.target, dropped=[state.target])

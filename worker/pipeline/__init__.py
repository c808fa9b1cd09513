"""What happens to a turn after the chat server hands it over: the dispatcher claims due threads
from Redis and sends their ids to Celery; a reflection takes the user's lease, snapshots the
thread, checks the generation, extracts, journals the plan (the commit point), writes Qdrant and
trims exactly the consumed turns. The worker-side Redis keys and Lua scripts live here."""

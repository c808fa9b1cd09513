"""The scripted OpenAI-compatible LLM in a process of its own, so that its CPU and GIL are not
charged to the worker being measured. ``python -m bench.llm_server LATENCY_S`` prints the base
URL on one line and serves until stdin closes."""

from __future__ import annotations

import sys

from tests.support.llm_scripts import insert_each_user_turn
from tests.support.scripted_llm import ScriptedLLM


def main() -> None:
    latency_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    with ScriptedLLM(latency_s=latency_s) as llm:
        llm.set_responder(insert_each_user_turn)
        print(llm.base_url, flush=True)
        sys.stdin.read()  # bounded by the parent: it closes our stdin when done


if __name__ == "__main__":
    main()

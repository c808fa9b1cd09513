"""The README stays true to the code: its configuration table is the generated one, and every
`reverie` command is listed."""

from __future__ import annotations

from pathlib import Path

import typer.main

from worker.ops.settings_doc import END, START, render_readme, table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_is_generated_from_settings() -> None:
    """Run `python -m worker.ops.settings_doc --write` after changing schemas/settings.py."""
    text = README.read_text()
    assert START in text and END in text
    assert render_readme(text) == text, "README table is stale: run python -m worker.ops.settings_doc --write"


def test_generated_table_has_a_row_per_setting() -> None:
    from schemas.settings import Settings

    rows = [line for line in table().splitlines() if line.startswith("| `REVERIE_")]
    assert len(rows) == len(Settings.model_fields)
    assert all(row.count("|") >= 4 and not row.endswith("|  |") for row in rows), "every setting needs a description"


def test_readme_lists_every_cli_command() -> None:
    from worker.ops.cli import cli

    text = README.read_text()
    group = typer.main.get_command(cli)
    missing = [name for name in group.commands if f"reverie {name}" not in text and f"/ `{name}`" not in text]  # type: ignore[attr-defined]
    assert missing == []


def test_readme_webhook_payload_and_types_are_the_code_s() -> None:
    """The Webhooks section's example body has the fields ``payload`` builds, and it names every
    event type."""
    import json
    import re

    from schemas.events import ChangeEvent
    from schemas.webhooks import ALL_EVENT_TYPES, payload

    section = README.read_text().split("### Webhooks", 1)[1].split("\n### ", 1)[0]
    [example] = re.findall(r"```json\n(.*?)```", section, re.S)
    documented = json.loads(example.replace("…", ""))
    built = payload(ChangeEvent(event_id="e", user_id="u", op="update"), "t")
    assert set(documented) == set(built) and set(documented["data"]) == set(built["data"])
    assert documented["type"] in ALL_EVENT_TYPES
    assert all(f"`{t}`" in section for t in ALL_EVENT_TYPES)
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert f"`{header}`" in section

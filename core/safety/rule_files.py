"""Where the rules live: the bundled set in data/rules, the admin-edited copy in the data folder, saving with a backup."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from core.safety.rule_loading import read_sources
from core.safety.rule_schema import BUNDLED_RULES_DIR, CONFIG_FILE
from core.safety.rules import RuleSet
from core.settings import Settings


def rules_dir(settings: Settings) -> Path:
    """The admin-edited copy under the data folder if there is one, else the bundled rules."""
    edited = settings.data_dir / "rules"
    return edited if (edited / CONFIG_FILE).is_file() else BUNDLED_RULES_DIR


def editable_rules_dir(settings: Settings) -> Path:
    """The data-folder copy, created from the bundled rules on first edit."""
    edited = settings.data_dir / "rules"
    if not (edited / CONFIG_FILE).is_file():
        edited.mkdir(parents=True, exist_ok=True)
        for f in sorted(BUNDLED_RULES_DIR.glob("*.yaml")):
            (edited / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return edited


def load_rules(settings: Settings) -> RuleSet:
    return RuleSet.load(rules_dir(settings))


def save_rule_file(settings: Settings, file_name: str, text: str) -> Path:
    """Validate the whole rule set with `text` as `file_name`, then write it atomically to the
    data-folder copy, keeping the previous version as `<file>.bak-<timestamp>`. Raises `RuleError`."""
    folder = editable_rules_dir(settings)
    sources = read_sources(folder)
    key = next((k for k in sources if Path(k).name == file_name), str(folder / file_name))
    RuleSet.from_sources({**sources, key: text})
    target = folder / Path(file_name).name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        shutil.copy2(target, target.with_name(f"{target.name}.bak-{stamp}"))
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target

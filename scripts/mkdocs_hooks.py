"""MkDocs hooks (mkdocs.yml): publish bench/results/ beside the performance page, so it shows the
latest run's chart and links its raw figures without a copy in docs/ going stale. (The run's table,
latest.md, is included into the page itself by pymdownx.snippets.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
PUBLISHED = ("latest.png", "latest.json")


def on_files(files: Files, config: Any) -> Files:
    for name in PUBLISHED:
        files.append(File.generated(config, f"performance/{name}", abs_src_path=str(RESULTS / name)))
    return files

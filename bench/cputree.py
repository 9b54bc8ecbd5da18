"""CPU time of whole process trees, for the scenarios that compare the farm with a peer program
(scrape: a worker and its Chromium; embed: a worker and its model).

A tree's CPU is every live process's own time plus the time of the children it has reaped: a
Chromium renderer lives for one page, and its time reaches its zygote when the zygote reaps it. A
process that vanishes while the tree is walked was just reaped (its time moved to its parent), so
the walk starts again.
"""

from __future__ import annotations

from collections import Counter

import psutil


def kind(p: psutil.Process) -> str:
    """What a process of a tree is, for a breakdown: python, node (Playwright's driver), browser,
    renderer (a zygote: the renderers it forked and reaped, and itself), gpu, utility, other."""
    try:
        argv = p.cmdline()
    except psutil.Error:
        return "other"
    name = (argv[0].rsplit("/", 1)[-1] if argv else p.name()).lower()
    if "python" in name or name in ("jobyard", "dramatiq"):
        return "python"
    if "node" in name or "node" in p.name().lower():
        return "node"
    types = [a.split("=", 1)[1] for a in argv if a.startswith("--type=")]
    if not types:
        return "browser" if "chrom" in name or "chrome" in name else "other"
    return {"zygote": "renderer", "renderer": "renderer", "gpu-process": "gpu", "utility": "utility"}.get(
        types[0], "other"
    )


def _walk(roots: tuple[int, ...], by_kind: bool) -> Counter[str]:
    total: Counter[str] = Counter()
    for pid in roots:
        root = psutil.Process(pid)
        for p in (root, *root.children(recursive=True)):
            t = p.cpu_times()
            total[kind(p) if by_kind else "all"] += t.user + t.system + t.children_user + t.children_system
    return total


def tree_cpu(*roots: int, tries: int = 20) -> float:
    """CPU seconds used so far by the processes ``roots`` and all their descendants, alive or reaped
    by one of them."""
    return sum(tree_cpu_by_kind(*roots, tries=tries, by_kind=False).values())


def tree_cpu_by_kind(*roots: int, tries: int = 20, by_kind: bool = True) -> Counter[str]:
    """As tree_cpu, by ``kind`` of process."""
    for _ in range(tries - 1):
        try:
            return _walk(roots, by_kind)
        except psutil.NoSuchProcess:
            continue
    return _walk(roots, by_kind)

"""The dashboard's dead-letter pages (control_api/dashboard/deadletters.py): the patch diff."""

from __future__ import annotations

from control_api.dashboard.deadletters import payload_diff


def test_the_patch_diff_marks_removed_and_added_lines() -> None:
    lines = payload_diff({"chat_id": "c1", "by": 2}, {"chat_id": "c2"})
    assert ("del", '-  "by": 2,') in lines
    assert ("del", '-  "chat_id": "c1"') in lines
    assert ("add", '+  "chat_id": "c2"') in lines
    assert ("same", " {") in lines

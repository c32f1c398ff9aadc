"""Page: every study in the store."""

from __future__ import annotations

from paretune.dashboard.view_studies import page

page()

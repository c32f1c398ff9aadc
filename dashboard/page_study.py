"""Page: one study (``?study=NAME``)."""

from __future__ import annotations

from paretune.dashboard.view_study import page

page()

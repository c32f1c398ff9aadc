"""Page: the fronts of several studies overlaid (``?studies=A&studies=B``)."""

from __future__ import annotations

from paretune.dashboard.view_compare import page

page()

"""paretune's dashboard: ``streamlit run dashboard/app.py`` (``paretune dashboard`` does it).

Reads the store named by ``$PARETUNE_STORAGE`` (read-only). Pages: Studies, Study, Compare.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from paretune.dashboard import warmup

HERE = Path(__file__).parent

warmup.start()
st.set_page_config(page_title="paretune", page_icon=":material/stacked_line_chart:", layout="wide")

pages = [
    st.Page(
        str(HERE / "page_studies.py"),
        title="Studies",
        icon=":material/table_rows:",
        default=True,
    ),
    st.Page(
        str(HERE / "page_study.py"),
        title="Study",
        icon=":material/monitoring:",
        url_path="study",
    ),
    st.Page(
        str(HERE / "page_compare.py"),
        title="Compare",
        icon=":material/compare_arrows:",
        url_path="compare",
    ),
]
st.navigation(pages).run()

"""The study store: paretune's tables beside Optuna's on one database.

- ``study_store``: ``StudyStore``, ``open_store``, the table objects and the retries on
  transient database errors;
- ``read``: the read API every reader (the CLI, the dashboard) uses;
- ``optuna_tables``: the columns of Optuna's tables paretune reads;
- ``urls``: storage URLs (defaults, masking, the storage file of a Ray Job).
"""

"""Optuna's RDB tables, the columns paretune reads, as SQLAlchemy Core table objects.

Optuna owns these tables (``optuna.storages._rdb.models``); paretune never writes them directly
and never creates them from here. Declaring what it reads, once, lets every read be a
``select()`` on a column object rather than a SQL string, so a renamed column fails at one place
(and in the tests that build a real Optuna study) instead of silently in a dashboard query.

Optuna keeps enum columns (``state``, ``direction``, ``value_type``) as their names, read here as
plain strings.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text

OPTUNA_METADATA = MetaData()

studies = Table(
    "studies",
    OPTUNA_METADATA,
    Column("study_id", Integer, primary_key=True),
    Column("study_name", String(512)),
)
study_directions = Table(
    "study_directions",
    OPTUNA_METADATA,
    Column("study_direction_id", Integer, primary_key=True),
    Column("direction", String(8)),
    Column("study_id", Integer),
    Column("objective", Integer),
)
trials = Table(
    "trials",
    OPTUNA_METADATA,
    Column("trial_id", Integer, primary_key=True),
    Column("number", Integer),
    Column("study_id", Integer),
    Column("state", String(8)),
    Column("datetime_start", DateTime),
    Column("datetime_complete", DateTime),
)
trial_values = Table(
    "trial_values",
    OPTUNA_METADATA,
    Column("trial_value_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("objective", Integer),
    Column("value", Float),
    Column("value_type", String(7)),
)
trial_params = Table(
    "trial_params",
    OPTUNA_METADATA,
    Column("param_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("param_name", String(512)),
    Column("param_value", Float),
    Column("distribution_json", Text),
)
trial_user_attributes = Table(
    "trial_user_attributes",
    OPTUNA_METADATA,
    Column("trial_user_attribute_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("key", String(512)),
    Column("value_json", Text),
)
trial_system_attributes = Table(
    "trial_system_attributes",
    OPTUNA_METADATA,
    Column("trial_system_attribute_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("key", String(512)),
    Column("value_json", Text),
)
trial_intermediate_values = Table(
    "trial_intermediate_values",
    OPTUNA_METADATA,
    Column("trial_intermediate_value_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("step", Integer),
    Column("intermediate_value", Float),
)

"""Registers every table module on ``dashboards.db.Base`` (imported by ``create_all``)."""

from __future__ import annotations

import importlib

# Each entry is a module that defines tables; missing ones are skipped while they are built.
TABLE_MODULES = (
    "dashboards.call_records",
    "dashboards.accounts",
    "dashboards.audit",
    "dashboards.faq_versions",
    "dashboards.node_directory",
)

for _name in TABLE_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as exc:
        if exc.name != _name:
            raise

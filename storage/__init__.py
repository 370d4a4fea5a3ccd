"""Durable TinyDB-backed storage (see storage/store.py for the durability design)."""

from storage.backup import backup, list_backups, newest_good_backup, restore
from storage.errors import StoreDamaged, StoreError, StoreFailed, StoreLocked
from storage.records import MemberRecord, Outage
from storage.repos import AuditEntry, CheckinResult, CheckinStats
from storage.store import Store
from storage.tables import DurableTable, Tx

__all__ = [
    "AuditEntry",
    "CheckinResult",
    "CheckinStats",
    "DurableTable",
    "MemberRecord",
    "Outage",
    "Store",
    "StoreDamaged",
    "StoreError",
    "StoreFailed",
    "StoreLocked",
    "Tx",
    "backup",
    "list_backups",
    "newest_good_backup",
    "restore",
]

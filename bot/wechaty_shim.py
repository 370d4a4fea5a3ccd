"""Import wechaty on Python 3.11 (see ../shared/notes/wechaty.md).

Only bot/adapter.py (and the gateway's own client tests) may call this: the rest
of the bot never sees wechaty types.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType


def import_wechaty() -> ModuleType:
    # Importing wechaty writes a cache dir into the cwd unless CACHE_DIR is set,
    # and logs loudly unless told otherwise.
    os.environ.setdefault(
        "CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "qunbot-wechaty")
    )
    os.environ.setdefault("WECHATY_LOG", "warn")
    from wechaty_puppet.schemas.puppet import PuppetOptions

    # Python 3.11 dataclasses reject an unhashable dataclass as a field default;
    # WechatyOptions uses PuppetOptions() as one. Always pass puppet_options
    # explicitly, since this default instance would be shared.
    PuppetOptions.__hash__ = object.__hash__  # type: ignore[assignment,unused-ignore]
    import wechaty
    import wechaty_puppet_service  # noqa: F401 - its logger is configured on import

    # PuppetService's warnings print the service token verbatim; secrets never reach our logs.
    # The plugin manager warns on every login that there is no plugin web service: noise.
    # Accessory warns whenever a cached payload is refreshed.
    for name in ("PuppetService", "wechaty.plugin", "Accessory"):
        logging.getLogger(name).setLevel(logging.ERROR)
    module: ModuleType = wechaty
    return module

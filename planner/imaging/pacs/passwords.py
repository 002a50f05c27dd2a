"""Where PACS passwords are kept: the system keyring (the ``keyring`` package: Secret Service, macOS
Keychain, Windows Credential Locker) when the system has one; otherwise a file readable by this user
only (0600, in a 0700 folder), never the node list itself and never anything world-readable.
:func:`store_name` says which is used (the PACS window shows it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import keyring
import keyring.errors
from keyring.backends import fail

from planner.imaging.pacs.common import log
from planner.imaging.pacs.received import private_folder
from planner.logsafe import data_dir
from planner.safefiles import atomic_write_text

SERVICE = "BVN Planner PACS"


def _has_keyring() -> bool:
    return not isinstance(keyring.get_keyring(), fail.Keyring)


def store_name() -> str:
    if _has_keyring():
        return f"the system keyring ({type(keyring.get_keyring()).__name__})"
    return f"a private file ({secrets_path()}, readable by this user only)"


def secrets_path() -> Path:
    return data_dir() / "pacs-secrets" / "secrets.json"


def _read_file() -> dict:
    try:
        return json.loads(secrets_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("the PACS password file is unreadable; passwords must be entered again")
        return {}


def _write_file(data: dict) -> None:
    path = secrets_path()
    private_folder(path.parent)
    atomic_write_text(path, json.dumps(data))  # an exclusive 0600 temporary renamed over the file


def get_password(key: str) -> Optional[str]:
    if _has_keyring():
        try:
            return keyring.get_password(SERVICE, key)
        except keyring.errors.KeyringError as exc:
            log.warning("the system keyring could not be read (%s)", type(exc).__name__)
            return None
    return _read_file().get(key)


def set_password(key: str, password: str) -> None:
    """Keep ``password`` for ``key`` (an empty password removes it)."""
    if _has_keyring():
        if password:
            keyring.set_password(SERVICE, key, password)
        else:
            try:
                keyring.delete_password(SERVICE, key)
            except keyring.errors.PasswordDeleteError:
                pass
        return
    data = _read_file()
    if password:
        data[key] = password
    else:
        data.pop(key, None)
    _write_file(data)

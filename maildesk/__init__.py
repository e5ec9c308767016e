"""maildesk: an email-driven helpdesk daemon.

The sub-packages live in the repository's top-level folders (``daemon/``,
``parsers/``, ``storage/``, ``workflow/``, ``templates/``) and are installed
under this package.  When the code runs straight from a source checkout
(``python -m maildesk`` in the repository) those folders are found beside
this one; an installed copy never looks outside site-packages.
"""
from pathlib import Path as _Path

__version__ = "0.1.0"

_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "daemon" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821  (module attribute of a package)

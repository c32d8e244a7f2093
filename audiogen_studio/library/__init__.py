"""The take library (issue 7): every prompt and take, with what produced it, kept locally.

SQLite (WAL, versioned migrations) beside content-addressed FLAC audio; keyword search (FTS5),
sound similarity (log-mel statistics embeddings), filters and hybrid ranking. No Qt here: the
app's Library dock and the ``audiogen-studio library`` commands are thin layers over
:class:`TakeLibrary`.
"""

from audiogen_studio.library.search import Filters
from audiogen_studio.library.store import (
    GcReport,
    ImportReport,
    LibraryError,
    PromptEntry,
    SearchResult,
    TakeEntry,
    TakeInfo,
    TakeLibrary,
    default_root,
)

__all__ = [
    "Filters",
    "GcReport",
    "ImportReport",
    "LibraryError",
    "PromptEntry",
    "SearchResult",
    "TakeEntry",
    "TakeInfo",
    "TakeLibrary",
    "default_root",
]

"""Real English sentences from installed docstrings: offline text for the MiniLM example.

The first paragraph of a docstring is usually one or two plain sentences written by a person
("Return the indices of the maximum values along an axis."), which is the kind of short text an
embedding model is served. Walking a fixed list of modules in sorted order makes the corpus the
same on every run with the same Python and numpy.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import warnings
from collections.abc import Iterator
from types import ModuleType

__all__ = ["MAX_WORDS", "MIN_WORDS", "SOURCE_MODULES", "docstring_sentences"]

SOURCE_MODULES = (
    "json",
    "collections",
    "argparse",
    "http",
    "email",
    "logging",
    "unittest",
    "numpy",
)
MIN_WORDS = 5
MAX_WORDS = 60

# numpy's public surface lives in a few namespaces; walking all of numpy would import its tests.
_NUMPY_NAMESPACES = (
    "numpy",
    "numpy.fft",
    "numpy.linalg",
    "numpy.ma",
    "numpy.polynomial",
    "numpy.random",
)
# Code, markup and signatures are not the natural language the model should be fed.
_NOT_PROSE = re.compile(r">>>|::|[{}\[\]=<>|]|^\w+\(|\w\(.*\)\s*->")


def _modules(root: str) -> Iterator[ModuleType]:
    if root == "numpy":
        for name in _NUMPY_NAMESPACES:
            yield importlib.import_module(name)
        return
    package = importlib.import_module(root)
    yield package
    if not hasattr(package, "__path__"):
        return
    found = pkgutil.walk_packages(package.__path__, f"{root}.", onerror=lambda _: None)
    for info in sorted(found, key=lambda i: i.name):
        parts = info.name.split(".")
        if any(p.startswith("_") or p in ("test", "tests") for p in parts):
            continue
        try:
            yield importlib.import_module(info.name)
        except Exception:  # a module that cannot import here just adds no sentences
            continue


def _docstrings(module: ModuleType) -> Iterator[str | None]:
    yield module.__doc__
    top = module.__name__.split(".")[0]

    def own(obj: object) -> bool:
        # Other packages re-export or patch in members (transformers adds Logger.warning_once);
        # their text would make the corpus depend on what else the process imported.
        return str(getattr(obj, "__module__", None) or top).split(".")[0] == top

    members = vars(module)
    for name in sorted(members):
        obj = members[name]
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not own(obj):
            continue
        yield obj.__doc__
        if inspect.isclass(obj):
            for attr in sorted(vars(obj)):
                method = vars(obj)[attr]
                if not attr.startswith("_") and inspect.isroutine(method) and own(method):
                    yield getattr(method, "__doc__", None)


def _first_paragraph(doc: str) -> str:
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def docstring_sentences(
    modules: tuple[str, ...] = SOURCE_MODULES,
    *,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[str]:
    """First paragraphs of docstrings in ``modules`` that read as prose, deduplicated, in order.

    Args:
        modules: Top-level modules to walk (packages include their public submodules).
        min_words: Shortest paragraph kept, in words.
        max_words: Longest paragraph kept, in words.

    Returns:
        Sentences in a deterministic order: modules as listed, members sorted by name.
    """
    seen: set[str] = set()
    sentences: list[str] = []
    with warnings.catch_warnings():
        # Importing rarely used submodules may emit deprecation notices that say nothing about us.
        warnings.simplefilter("ignore")
        for root in modules:
            for module in _modules(root):
                for doc in _docstrings(module):
                    if not isinstance(doc, str):
                        continue
                    text = _first_paragraph(doc)
                    if (
                        min_words <= len(text.split()) <= max_words
                        and not _NOT_PROSE.search(text)
                        and text not in seen
                    ):
                        seen.add(text)
                        sentences.append(text)
    return sentences

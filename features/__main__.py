"""``python -m features > docs/features.md``: print the feature reference generated from the definitions."""

from features.docs import render_docs

print(render_docs(), end="")

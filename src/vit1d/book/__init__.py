"""The book build: the papermill pipeline, what the chapters share, the bad-input
catalogue the book shows. The library never imports this package."""

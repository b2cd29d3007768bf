"""The report stage: a tidy table and its analysis in, HTML, Markdown and figures out.
Needs no GPU and no refit: never imports torch, transformers, the run stage or a plugin.
"""

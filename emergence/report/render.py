"""Drawing and rendering: figure jobs to PNG/SVG bytes (in worker processes when there are many)
and Jinja2 templates (autoescaped HTML, escaped Markdown) to text."""

import base64
import io
import multiprocessing as mp
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from emergence.files import write_atomic
from emergence.report import figures as F
from emergence.report.config import ReportConfig
from emergence.workers import process_pool


@dataclass(frozen=True)
class FigureJob:
    """A figure to draw: ``figures.<func>(*args)``, with its file stem, title and caption."""
    stem: str
    title: str
    caption: str
    func: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def render_figures(jobs, fig_dir=None, config: ReportConfig = ReportConfig()) -> list:
    """Draw each figure job (in worker processes when there are several and CPUs to spare),
    write PNG (palette-quantised) and SVG (text as text; only if under ``svg_max_kb``) into
    ``fig_dir``, and return one record per job: id, title, caption, data URI, file paths."""
    workers = config.workers or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else os.cpu_count() or 1, 4)
    args = [(j, config.dpi, config.svg_max_kb) for j in jobs]
    if workers > 1 and len(jobs) >= 6 and "fork" in mp.get_all_start_methods():
        # fork: workers inherit the imported modules (no re-import of the caller's __main__)
        with process_pool(min(workers, len(jobs)), "fork") as pool:
            drawn = list(pool.map(_draw, args))
    else:
        drawn = [_draw(a) for a in args]
    records = []
    for i, (job, (png, svg)) in enumerate(zip(jobs, drawn), 1):
        name = f"{i:02d}-{_slug(job.stem)}"
        rec = {"id": name, "title": job.title, "caption": job.caption, "png": None, "svg": None,
               "src": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}
        if fig_dir is not None:
            write_atomic(Path(fig_dir) / f"{name}.png", png)
            rec["png"] = f"figures/{name}.png"
            if svg is not None:
                write_atomic(Path(fig_dir) / f"{name}.svg", svg)
                rec["svg"] = f"figures/{name}.svg"
        records.append(rec)
    return records

def render(template: str, context: dict) -> str:
    """Render a template of emergence/report/templates: autoescaped HTML, Markdown with ``md`` escaping."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("emergence.report", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["md"] = _md
    return env.get_template(template).render(**context)


def _draw(item):
    """PNG and SVG bytes of one job (runs in a worker process too)."""
    import matplotlib
    from PIL import Image

    job, dpi, svg_max_kb = item
    fig = getattr(F, job.func)(*job.args, **job.kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    # A 256-colour palette keeps anti-aliased plots intact at a third of the size.
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
    png = io.BytesIO()
    img.save(png, format="png", optimize=True)
    fig.set_layout_engine("none")  # keep the positions just computed: the SVG reuses them
    svg = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "emergence"}):
        fig.savefig(svg, format="svg", metadata={"Date": None})
    fig.clear()
    return png.getvalue(), (svg.getvalue() if svg.tell() <= svg_max_kb * 1024 else None)

def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "figure"

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|])")

def _md(text):
    """Markdown text from data: markup characters escaped (so HTML and table pipes stay text)."""
    s = "" if text is None else str(text)
    return _MD_SPECIAL.sub(r"\\\1", s.replace("&", "&amp;")).replace("\n", " ")

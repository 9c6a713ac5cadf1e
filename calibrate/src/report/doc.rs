//! A small document model (sections of paragraphs, tables, lists and plots) rendered twice:
//! as a self-contained HTML page and as Markdown, so both reports say the same things.

use std::fmt::Write as _;

/// A piece of running text.
#[derive(Debug, Clone)]
pub(crate) enum Inline {
    /// Plain text.
    Text(String),
    /// Emphasised text.
    Strong(String),
    /// Monospace text (ids, paths, equations).
    Code(String),
    /// A relative link.
    Link { href: String, text: String },
}

/// Plain text.
pub(crate) fn t(s: impl Into<String>) -> Inline {
    Inline::Text(s.into())
}

/// Emphasised text.
pub(crate) fn b(s: impl Into<String>) -> Inline {
    Inline::Strong(s.into())
}

/// Monospace text.
pub(crate) fn code(s: impl Into<String>) -> Inline {
    Inline::Code(s.into())
}

/// A table cell: inline content and a CSS class (`pass`, `fail`, `num`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cell {
    pub content: Vec<Inline>,
    pub class: Option<&'static str>,
}

impl Cell {
    /// A cell of plain text.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell {
            content: vec![t(s)],
            class: None,
        }
    }
    /// A right-aligned number cell.
    pub fn num(s: impl Into<String>) -> Cell {
        Cell {
            content: vec![t(s)],
            class: Some("num"),
        }
    }
    /// A cell of inlines.
    pub fn of(content: Vec<Inline>) -> Cell {
        Cell {
            content,
            class: None,
        }
    }
    /// The same cell with a class.
    pub fn class(mut self, class: &'static str) -> Cell {
        self.class = Some(class);
        self
    }
}

/// An inline SVG plot with its identity and caption.
#[derive(Debug, Clone)]
pub(crate) struct Plot {
    /// `data-plot` name, also the Markdown SVG file name (`report-plots/<name>.svg`).
    pub name: String,
    /// Caption (one or two sentences).
    pub caption: String,
    /// Short alternative text.
    pub alt: String,
    /// The `<svg>` document.
    pub svg: String,
}

/// A block of a section.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// A paragraph.
    Para(Vec<Inline>),
    /// A highlighted paragraph: `pass`, `fail` or `note`.
    Callout(&'static str, Vec<Inline>),
    /// A bulleted list.
    List(Vec<Vec<Inline>>),
    /// A table with a header row; each row may carry a class.
    Table {
        head: Vec<String>,
        rows: Vec<(Option<&'static str>, Vec<Cell>)>,
    },
    /// A sub-heading.
    Heading(String),
    /// A plot.
    Figure(Plot),
}

/// One `<section>`.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub id: &'static str,
    pub title: String,
    pub blocks: Vec<Block>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub title: String,
    pub subtitle: String,
    pub sections: Vec<Section>,
}

/// Escape text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode what a relative URL cannot hold literally (spaces, quotes, `#`, `?`).
pub(crate) fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '"' => out.push_str("%22"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3F"),
            '<' => out.push_str("%3C"),
            '>' => out.push_str("%3E"),
            '(' => out.push_str("%28"),
            ')' => out.push_str("%29"),
            c => out.push(c),
        }
    }
    out
}

// Inline CSS only (the page must open offline, from a file, with nothing else).
const CSS: &str = r#"
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --pass:#17773b; --pass-bg:#e6f4ea;
        --fail:#b3261e; --fail-bg:#fce8e6; --note-bg:#fff7e0; --accent:#2456a6; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:#f5f6f8; }
header { background:#1d2330; color:#fff; padding:18px 28px 10px; }
header h1 { margin:0 0 2px; font-size:24px; }
header p { margin:0 0 10px; color:#c9cfdb; }
nav a { color:#cfe0ff; margin-right:14px; text-decoration:none; font-size:14px; }
nav a:hover { text-decoration:underline; }
main { max-width:1100px; margin:0 auto; padding:8px 20px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:6px 22px 16px; margin:18px 0; }
h2 { font-size:20px; border-bottom:1px solid var(--line); padding-bottom:6px; }
h3 { font-size:16px; margin:18px 0 6px; }
table { border-collapse:collapse; width:100%; margin:8px 0 12px; font-size:14px; }
th, td { border:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:#eef1f6; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tr.fail td { background:var(--fail-bg); }
td.pass { color:var(--pass); font-weight:700; }
td.fail { color:var(--fail); font-weight:700; }
code { font:13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background:#f0f2f5; padding:0 3px; border-radius:3px; word-break:break-all; }
.callout { padding:10px 14px; border-radius:6px; margin:10px 0; }
.callout.pass { background:var(--pass-bg); border-left:6px solid var(--pass); }
.callout.fail { background:var(--fail-bg); border-left:6px solid var(--fail); }
.callout.note { background:var(--note-bg); border-left:6px solid #d4a017; }
.callout.pass strong:first-child, .callout.fail strong:first-child { font-size:20px; }
figure.plot { margin:12px 0 18px; }
figure.plot svg { display:block; width:100%; height:auto; max-width:900px; border:1px solid var(--line); background:#fff; }
figcaption { color:var(--muted); font-size:13px; margin-top:4px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px; }
"#;

fn html_inlines(out: &mut String, inlines: &[Inline]) {
    for i in inlines {
        match i {
            Inline::Text(s) => out.push_str(&esc(s)),
            Inline::Strong(s) => {
                let _ = write!(out, "<strong>{}</strong>", esc(s));
            }
            Inline::Code(s) => {
                let _ = write!(out, "<code>{}</code>", esc(s));
            }
            Inline::Link { href: h, text } => {
                let _ = write!(out, "<a href=\"{}\">{}</a>", esc(&href(h)), esc(text));
            }
        }
    }
}

/// Render the document as one self-contained HTML page (inline CSS and SVG, no scripts).
pub(crate) fn to_html(doc: &Document) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p>{}</p>\n<nav>",
        esc(&doc.title),
        esc(&doc.title),
        esc(&doc.subtitle)
    );
    for s in &doc.sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", s.id, esc(&s.title));
    }
    out.push_str("</nav>\n</header>\n<main>\n");
    for s in &doc.sections {
        let _ = write!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n",
            s.id,
            esc(&s.title)
        );
        for block in &s.blocks {
            html_block(&mut out, block);
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main>\n<footer>Written by migwatt calibrate report. Everything on this page is inline: it opens offline.</footer>\n</body>\n</html>\n");
    out
}

fn html_block(out: &mut String, block: &Block) {
    match block {
        Block::Para(p) => {
            out.push_str("<p>");
            html_inlines(out, p);
            out.push_str("</p>\n");
        }
        Block::Callout(class, p) => {
            let _ = write!(out, "<p class=\"callout {class}\">");
            html_inlines(out, p);
            out.push_str("</p>\n");
        }
        Block::List(items) => {
            out.push_str("<ul>\n");
            for i in items {
                out.push_str("<li>");
                html_inlines(out, i);
                out.push_str("</li>\n");
            }
            out.push_str("</ul>\n");
        }
        Block::Heading(h) => {
            let _ = writeln!(out, "<h3>{}</h3>", esc(h));
        }
        Block::Table { head, rows } => {
            out.push_str("<table>\n");
            // A key-value table has no header row worth showing.
            if head.iter().any(|h| !h.is_empty()) {
                out.push_str("<thead><tr>");
                for h in head {
                    let _ = write!(out, "<th>{}</th>", esc(h));
                }
                out.push_str("</tr></thead>\n");
            }
            out.push_str("<tbody>\n");
            for (class, cells) in rows {
                match class {
                    Some(c) => {
                        let _ = write!(out, "<tr class=\"{c}\">");
                    }
                    None => out.push_str("<tr>"),
                }
                for c in cells {
                    match c.class {
                        Some(cl) => {
                            let _ = write!(out, "<td class=\"{cl}\">");
                        }
                        None => out.push_str("<td>"),
                    }
                    html_inlines(out, &c.content);
                    out.push_str("</td>");
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        Block::Figure(p) => {
            let _ = write!(
                out,
                "<figure class=\"plot\" data-plot=\"{}\" role=\"img\" aria-label=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
                esc(&p.name),
                esc(&p.alt),
                strip_xml_prolog(&p.svg),
                esc(&p.caption)
            );
        }
    }
}

/// The `<svg>` element without any XML declaration before it (not allowed inside HTML).
fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Escape Markdown's special characters in running text and table cells.
fn md_esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn md_inlines(inlines: &[Inline]) -> String {
    let mut out = String::new();
    for i in inlines {
        match i {
            Inline::Text(s) => out.push_str(&md_esc(s)),
            Inline::Strong(s) => {
                let _ = write!(out, "**{}**", md_esc(s));
            }
            Inline::Code(s) => {
                // A code span cannot hold a pipe inside a table; escape it anyway.
                let s = s.replace('`', "'").replace('|', "\\|");
                let _ = write!(out, "`{s}`");
            }
            Inline::Link { href: h, text } => {
                let _ = write!(out, "[{}](<{}>)", md_esc(text), href(h));
            }
        }
    }
    out
}

/// Markdown link target of a plot's SVG file, relative to the report.
pub(crate) fn plot_file(name: &str) -> String {
    format!("{}/{name}.svg", super::PLOTS_DIR)
}

/// Render the document as Markdown; plots link to `report-plots/<name>.svg`.
pub(crate) fn to_markdown(doc: &Document) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = writeln!(
        out,
        "# {}\n\n{}\n",
        md_esc(&doc.title),
        md_esc(&doc.subtitle)
    );
    for s in &doc.sections {
        let _ = write!(out, "[{}](#{}) ", md_esc(&s.title), s.id);
    }
    out.push_str("\n\n");
    for s in &doc.sections {
        let _ = writeln!(out, "<a id=\"{}\"></a>\n\n## {}\n", s.id, md_esc(&s.title));
        for block in &s.blocks {
            match block {
                Block::Para(p) => {
                    let _ = writeln!(out, "{}\n", md_inlines(p));
                }
                Block::Callout(_, p) => {
                    let _ = writeln!(out, "> {}\n", md_inlines(p));
                }
                Block::List(items) => {
                    for i in items {
                        let _ = writeln!(out, "- {}", md_inlines(i));
                    }
                    out.push('\n');
                }
                Block::Heading(h) => {
                    let _ = writeln!(out, "### {}\n", md_esc(h));
                }
                Block::Table { head, rows } => {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        head.iter()
                            .map(|h| md_esc(h))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                    let _ = writeln!(out, "|{}", head.iter().map(|_| "---|").collect::<String>());
                    for (_, cells) in rows {
                        let _ = writeln!(
                            out,
                            "| {} |",
                            cells
                                .iter()
                                .map(|c| md_inlines(&c.content))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        );
                    }
                    out.push('\n');
                }
                Block::Figure(p) => {
                    let _ = writeln!(
                        out,
                        "![{}](<{}>)\n\n*{}*\n",
                        md_esc(&p.alt),
                        plot_file(&p.name),
                        md_esc(&p.caption)
                    );
                }
            }
        }
    }
    out
}

/// Every plot of the document, in order.
pub(crate) fn plots(doc: &Document) -> Vec<&Plot> {
    doc.sections
        .iter()
        .flat_map(|s| &s.blocks)
        .filter_map(|b| match b {
            Block::Figure(p) => Some(p),
            _ => None,
        })
        .collect()
}

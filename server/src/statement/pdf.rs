//! Statements as PDF, typeset by typst used as a library: the template (`templates/statement.typ`) is
//! fixed and reads the statement from a JSON file, so no job name or tag is ever parsed as markup; the
//! chart is a plotters SVG; the fonts are typst's own, embedded in the binary.

use std::sync::OnceLock;

use chrono::{Datelike, Utc};
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

const TEMPLATE: &str = include_str!("../../../templates/statement.typ");

/// The library and fonts, loaded once per process.
struct Shared {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        Shared {
            library: LazyHash::new(Library::default()),
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    })
}

fn file_id(path: &str) -> FileId {
    // The paths are this module's own constants.
    RootedPath::new(
        VirtualRoot::Project,
        VirtualPath::new(path).unwrap_or_else(|_| unreachable!("valid path {path}")),
    )
    .intern()
}

/// One compilation: the template, the statement as JSON, the chart.
struct StatementWorld {
    main: Source,
    data: Bytes,
    chart: Bytes,
    today: chrono::NaiveDate,
}

impl World for StatementWorld {
    fn library(&self) -> &LazyHash<Library> {
        &shared().library
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &shared().book
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotSource)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == file_id("data.json") {
            Ok(self.data.clone())
        } else if id == file_id("chart.svg") {
            Ok(self.chart.clone())
        } else if id == self.main.id() {
            Ok(Bytes::from_string(self.main.text().to_owned()))
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        shared().fonts.get(index).cloned()
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        Datetime::from_ymd(
            self.today.year(),
            self.today.month() as u8,
            self.today.day() as u8,
        )
    }
}

/// Typesets the statement template over `data` (JSON) and `chart_svg` into a PDF.
pub(crate) fn render(data: &serde_json::Value, chart_svg: &str) -> Result<Vec<u8>, String> {
    let world = StatementWorld {
        main: Source::new(file_id("statement.typ"), TEMPLATE.to_owned()),
        data: Bytes::new(serde_json::to_vec(data).map_err(|e| e.to_string())?),
        chart: Bytes::new(chart_svg.as_bytes().to_vec()),
        today: Utc::now().date_naive(),
    };
    let document: PagedDocument = typst::compile(&world).output.map_err(|errors| {
        errors
            .iter()
            .map(|e| e.message.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let pdf = typst_pdf::pdf(&document, &typst_pdf::PdfOptions::default()).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.message.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    });
    // typst memoizes across compilations; keep the cache from growing without bound.
    typst::comemo::evict(10);
    pdf
}
